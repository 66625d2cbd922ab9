import { constants as h2, type Http2Server, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import { http2ServersOf } from './grpc-js-internals';

// Node's HTTP/2 server (nghttp2) defends against "rapid reset" (CVE-2023-44487)
// with a token bucket per connection: every RST_STREAM the client sends takes
// a token, the bucket holds 1000 and refills at 33 per second, and when it is
// empty the whole connection ends with GOAWAY(INTERNAL_ERROR), failing every
// call in flight on it. gRPC clients reset a stream whenever they cancel a call,
// pass a deadline or drop a watch or keep-alive stream, so a busy long-lived
// client connection empties that bucket within seconds; etcd (grpc-go) counts
// no resets and never does this.
//
// The limits below sit far above what a client resets through real calls
// (each reset ends a call it started; the whole proxy answers under 10 000
// calls a second on two cores, so a client would have to abandon 10 000 calls
// at once, or more than 1 000 a second for long), and far below what a flood of
// HEADERS+RST_STREAM reaches: it costs the attacker nothing per stream, runs
// at tens of thousands a second, and is still cut off within a second or so.
// README.md ("HTTP/2 stream resets") has the measurements.

/** Resets a connection may send at once (nghttp2's default: 1000). */
export const STREAM_RESET_BURST = 10_000;
/** Resets per second a connection may send for as long as it likes (nghttp2's default: 33). */
export const STREAM_RESET_RATE_PER_S = 1_000;

/** Node took `streamResetBurst` / `streamResetRate` from v22.10.0 and v23.0.0 on; older versions ignore them. */
export const NODE_HONOURS_STREAM_RESET_LIMITS = ((): boolean => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 10);
})();

/**
 * Hands the limits to every HTTP/2 server grpc-js creates for this server
 * (the listener's connection injector).
 *
 * grpc-js 1.14 forwards no option for them: it builds each http2 server from
 * a private `commonServerOptions` object (server.ts), which is the one place
 * they can go without replacing grpc-js's server. Writing to it is the only
 * use of grpc-js internals in this project; call this before the first
 * `createConnectionInjector`. If a grpc-js upgrade renames the object, every
 * proxy start fails here, loudly, rather than quietly losing the limits.
 */
export function applyStreamResetLimits(server: Server): void {
  const internals = server as unknown as { commonServerOptions?: unknown };
  const options = internals.commonServerOptions;
  if (typeof options !== 'object' || options === null) {
    throw new Error('etcd-cache-proxy: @grpc/grpc-js keeps its HTTP/2 server options elsewhere now; src/grpc/http2-limits.ts needs a new way to set streamResetBurst/streamResetRate');
  }
  Object.assign(options, { streamResetBurst: STREAM_RESET_BURST, streamResetRate: STREAM_RESET_RATE_PER_S });
}

/** nghttp2's own bucket, which Node before 22.10 keeps whatever the proxy asks. */
const NGHTTP2_RESET_BURST = 1_000;
const NGHTTP2_RESET_RATE_PER_S = 33;
/**
 * Tokens left in (our reckoning of) nghttp2's bucket at which a connection is
 * asked to move. The margin covers resets nghttp2 counts and the proxy does
 * not see (a reset of a stream already finished) and resets arriving in one
 * read with the one that crossed the line.
 */
const ROTATE_AT_TOKENS = 300;
/** The highest stream ID: a first GOAWAY naming it lets every stream the client has already opened finish. */
const ANY_STREAM_ID = 2 ** 31 - 1;
/** How long after the first GOAWAY the second one names the last stream taken (RFC 9113's graceful shutdown). */
const SECOND_GOAWAY_MS = 1_000;

/**
 * On Node before 22.10, where nghttp2's bucket cannot be raised: nghttp2 stops
 * counting a connection's resets once the server has sent it a GOAWAY. So the
 * resets each client connection sends are reckoned as nghttp2 reckons them,
 * and before the bucket runs dry the connection is asked to move, gracefully
 * (GOAWAY NO_ERROR, as grpc-js's max connection age does): its calls in
 * flight, long watches included, finish on it; the client opens a fresh
 * connection, with a full bucket, for new calls. A second GOAWAY a second
 * later names the last stream taken, after which nghttp2 ignores any stream a
 * client (an attacker) still opens there. A burst of more than about 700
 * resets in one read still outruns this; only Node 22.10+ helps there.
 *
 * Hooks every HTTP/2 server grpc-js has created so far for `server` (call it
 * after creating the connection injector), reached through grpc-js's
 * internals (grpc-js-internals.ts).
 */
export function rotateBeforeResetLimit(server: Server, onRotated: () => void): void {
  for (const http2Server of http2ServersOf(server)) {
    if (hooked.has(http2Server)) continue;
    hooked.add(http2Server);
    http2Server.on('session', (session: Http2Session) => watchResets(session, onRotated));
  }
}

const hooked = new WeakSet<Http2Server>();

function watchResets(session: Http2Session, onRotated: () => void): void {
  let tokens = NGHTTP2_RESET_BURST;
  let refilledAt = Date.now();
  let lastStreamId = 0;
  let rotated = false;
  const rotate = (): void => {
    rotated = true;
    try {
      session.goaway(h2.NGHTTP2_NO_ERROR, ANY_STREAM_ID);
      session.close();
    } catch {
      session.destroy(); // already closing: nothing left to move
      return;
    }
    onRotated();
    const second = setTimeout(() => {
      if (!session.destroyed) session.goaway(h2.NGHTTP2_NO_ERROR, lastStreamId);
    }, SECOND_GOAWAY_MS);
    second.unref();
  };
  // One listener for every stream of the session (a stream closes once): nothing is made per call.
  function onStreamClose(this: ServerHttp2Stream): void {
    if (rotated || this.rstCode === h2.NGHTTP2_NO_ERROR) return;
    // nghttp2 refills whole seconds' worth at a time.
    const seconds = Math.floor((Date.now() - refilledAt) / 1000);
    if (seconds > 0) {
      tokens = Math.min(NGHTTP2_RESET_BURST, tokens + seconds * NGHTTP2_RESET_RATE_PER_S);
      refilledAt += seconds * 1000;
    }
    tokens -= 1;
    if (tokens <= ROTATE_AT_TOKENS) rotate();
  }
  session.on('stream', (stream: ServerHttp2Stream) => {
    lastStreamId = Math.max(lastStreamId, stream.id ?? 0);
    stream.on('close', onStreamClose);
  });

}
