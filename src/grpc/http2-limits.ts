import type { Server } from '@grpc/grpc-js';

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
