/** gRPC's message prefix: a compressed flag (0) and the message's length, big-endian. */
export const GRPC_FRAME_PREFIX_BYTES = 5;

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
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(length, 1);
  const message = frame.subarray(GRPC_FRAME_PREFIX_BYTES);
  frames.set(message, frame);
  return message;
}

/** The whole frame of a message made by allocateFramed (never to be written to), or undefined. */
export function frameOf(message: Buffer): Buffer | undefined {
  return frames.get(message);
}
