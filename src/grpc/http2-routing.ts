import type { Http2Server, Http2ServerRequest, Http2ServerResponse, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import { http2ServersOf } from './grpc-js-internals';
import { etcdMethod } from '../etcd/proto';
import { StreamPacer } from './stream-pacing';

export type Http2RequestListener = (request: Http2ServerRequest, response: Http2ServerResponse) => void;

type StreamListener = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

const routed = new WeakSet<Http2Server>();

/**
 * The calls whose starts are paced: etcd's long-lived streams, each of which
 * costs a setup and holds memory for as long as it is open. Unary calls are
 * answered and gone; a client pipelining them (h2load -m 64) must not wait
 * behind the pacing (it halved that client's rate here).
 */
const PACED_PATHS: ReadonlySet<string> = new Set([etcdMethod('etcdserverpb.Watch', 'Watch').path, etcdMethod('etcdserverpb.Lease', 'LeaseKeepAlive').path]);

/** etcd's own test: a request is gRPC's when its content type says so; any other goes to the HTTP handler. */
function isGrpc(headers: IncomingHttpHeaders): boolean {
  return (headers['content-type'] ?? '').includes('application/grpc');
}

/**
 * etcd serves its JSON gateway (and /health, /metrics, /version) over HTTP/2
 * as well as HTTP/1.1, on the port that serves gRPC: with TLS, ALPN's h2
 * carries both. grpc-js answers every HTTP/2 request that is not gRPC with
 * 415, so on each of its HTTP/2 servers the streams are routed first: gRPC to
 * grpc-js's own handler, the rest to Node's HTTP/2 compatibility layer (the
 * request/response pair Node makes for a 'request' listener) and on to
 * `onRequest`. Watch and lease keep-alive streams start paced
 * (stream-pacing.ts): a connection opening hundreds at once does not hold up
 * every other. Call it after the connection injector exists.
 */
export function routeHttpOverHttp2(server: Server, onRequest: Http2RequestListener): void {
  for (const http2Server of http2ServersOf(server)) {
    if (routed.has(http2Server)) continue;
    routed.add(http2Server);
    const grpcListeners = http2Server.listeners('stream') as StreamListener[];
    http2Server.removeAllListeners('stream');
    // Adding a 'request' listener makes Node add its compatibility layer as a 'stream' listener.
    http2Server.on('request', onRequest);
    const httpListeners = http2Server.listeners('stream') as StreamListener[];
    if (httpListeners.length === 0) throw new Error('etcd-cache-proxy: Node no longer serves HTTP/2 requests through a stream listener; src/grpc/http2-routing.ts needs another way');
    http2Server.removeAllListeners('stream');
    const startGrpc: StreamListener = (stream, headers, flags, rawHeaders) => {
      for (const listener of grpcListeners) listener.call(http2Server, stream, headers, flags, rawHeaders);
    };
    const pacer = new StreamPacer(startGrpc);
    http2Server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
      if (!isGrpc(headers)) for (const listener of httpListeners) listener.call(http2Server, stream, headers, flags, rawHeaders);
      else if (PACED_PATHS.has(headers[':path'] ?? '')) pacer.offer(stream, headers, flags, rawHeaders);
      else startGrpc(stream, headers, flags, rawHeaders);
    });
  }
}
