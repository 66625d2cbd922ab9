import type { Http2Server } from 'node:http2';
import type { Server } from '@grpc/grpc-js';

/**
 * The HTTP/2 servers grpc-js has created for `server` so far (one per
 * connection injector or bound port). grpc-js keeps them in a private map and
 * offers no public way to reach them; the proxy needs them for two things
 * grpc-js does not do (see http2-limits.ts and http2-routing.ts). A grpc-js
 * that keeps them elsewhere fails here, at start, with a clear message, not
 * later in silence.
 */
export function http2ServersOf(server: Server): Http2Server[] {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) {
    throw new Error('etcd-cache-proxy: @grpc/grpc-js keeps its HTTP/2 servers elsewhere now; src/grpc/grpc-js-internals.ts needs a new way to reach them');
  }
  return [...(servers.keys() as IterableIterator<Http2Server>)];
}
