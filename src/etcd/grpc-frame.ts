/** gRPC's message prefix: a compressed flag (0) and the message's length, big-endian. */
export const GRPC_FRAME_PREFIX_BYTES = 5;

/** Writes an uncompressed message's prefix at `offset`. */
function writePrefix(frame: Buffer, offset: number, length: number): void {
  frame.writeUInt8(0, offset);
  frame.writeUInt32BE(length, offset + 1);
}

/** Messages made with their prefix in front of them, by the message. */
const frames = new WeakMap<Buffer, Buffer>();

/**
 * A buffer for a message of `length` bytes with its gRPC prefix already
 * written in front: fill the returned message, and a transport that asks
 * `frameOf` sends the frame as it is instead of copying the message behind a
 * new prefix. For answers of megabytes, kept and sent again and again, that
 * copy and the garbage it leaves are most of what sending costs.
 */
export function allocateFramed(length: number): Buffer {
  const frame = Buffer.allocUnsafe(GRPC_FRAME_PREFIX_BYTES + length);
  writePrefix(frame, 0, length);
  const message = frame.subarray(GRPC_FRAME_PREFIX_BYTES);
  frames.set(message, frame);
  return message;
}

/** The whole frame of a message made by allocateFramed (never to be written to), or undefined. */
export function frameOf(message: Buffer): Buffer | undefined {
  return frames.get(message);
}

/** The messages a batch stands for, by the batch. */
const batches = new WeakMap<Buffer, readonly Buffer[]>();

/**
 * One write standing for several messages, in order: a stream that owes a
 * client many answers at once (a watch stream, an event for each of its
 * watchers) hands them to the transport in one write. Its frame (frameOf) is
 * every message behind its own prefix, which gRPC reads as the messages one
 * after another; a transport that writes messages one by one asks
 * `messagesOf`. The returned buffer's own bytes mean nothing.
 */
export function batchMessages(messages: readonly Buffer[]): Buffer {
  let size = 0;
  for (const message of messages) size += GRPC_FRAME_PREFIX_BYTES + message.length;
  const frame = Buffer.allocUnsafe(size);
  let at = 0;
  for (const message of messages) {
    writePrefix(frame, at, message.length);
    message.copy(frame, at + GRPC_FRAME_PREFIX_BYTES);
    at += GRPC_FRAME_PREFIX_BYTES + message.length;
  }
  const batch = Buffer.alloc(0);
  frames.set(batch, frame);
  batches.set(batch, [...messages]);
  return batch;
}

/** The messages of a batch made by batchMessages, or undefined for a single message. */
export function messagesOf(message: Buffer): readonly Buffer[] | undefined {
  return batches.get(message);
}
