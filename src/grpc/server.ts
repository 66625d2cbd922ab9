import type { Duplex } from 'node:stream';
import {
  Server,
  ServerCredentials,
  type handleBidiStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type MethodDefinition, type ServerOptions, type ServiceDefinition, type UntypedHandleCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Core } from '../core/core';
import type { Logger } from '../log';
import { sendPreFramedAnswers } from './pre-framed';
import { routeHttpOverHttp2, type Http2RequestListener } from './http2-routing';
import { applyStreamResetLimits, NODE_HONOURS_STREAM_RESET_LIMITS, rotateBeforeResetLimit } from './http2-limits';
import type { CoreMethod } from '../core/call';
import { passBytes } from '../etcd/proto';
import { proxyVersion } from '../version';
import { proxyHeaderInterceptor } from './proxy-header';

// etcd accepts requests up to --max-request-bytes (1.5 MiB) plus gRPC
// overhead and answers larger ones itself; the proxy's own ceiling sits well
// above that so the upstream's error, not ours, reaches the client.
const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

const SERVER_OPTIONS: ServerOptions = {
  'grpc.max_receive_message_length': MAX_REQUEST_BYTES,
  'grpc.max_send_message_length': -1,
  // Nothing reads the proxy's channelz; tracking every call for it costs the hot read path.
  'grpc.enable_channelz': 0,
};

/**
 * The gRPC adapter: a grpc-js server with the core's handlers registered as
 * they are (grpc-js's calls have the shape the core expects), messages as raw
 * bytes. Connections are injected by the listener.
 */
export function createGrpcServer(core: Core, log: Logger): Server {
  sendPreFramedAnswers();
  const server = new Server({ ...SERVER_OPTIONS, interceptors: [proxyHeaderInterceptor(proxyVersion())] });
  applyStreamResetLimits(server);
  if (!NODE_HONOURS_STREAM_RESET_LIMITS) {
    log.warn(
      { node: process.version },
      'this Node.js keeps HTTP/2 stream resets at 1000 per connection plus 33/s (Node 22.10+ lets the proxy raise that): busy client connections are asked to reconnect before that limit, but a burst of over ~700 resets at once still ends one with GOAWAY INTERNAL_ERROR',
    );
  }
  for (const service of core.services) {
    const definition: Record<string, MethodDefinition<Buffer, Buffer>> = {};
    const implementation: UntypedServiceImplementation = {};
    for (const [name, method] of service.methods) {
      definition[name] = {
        path: method.path,
        requestStream: method.kind === 'bidi',
        responseStream: method.kind !== 'unary',
        requestSerialize: passBytes,
        requestDeserialize: passBytes,
        responseSerialize: passBytes,
        responseDeserialize: passBytes,
      };
      implementation[name] = grpcHandler(method);
    }
    server.addService(definition as ServiceDefinition, implementation);
  }
  return server;
}

/** Where the listener hands the connections that speak gRPC (h2c, or h2 after TLS ended in the proxy). */
export interface GrpcConnections {
  injectConnection(connection: Duplex): void;
}

/**
 * The server's connection injector. Its HTTP/2 requests that are not gRPC go
 * to `httpRequest` (http2-routing.ts). On Node before 22.10 its connections
 * are also moved before nghttp2's reset limit would end them
 * (http2-limits.ts); `onMoved` counts each one.
 */
export function grpcConnections(server: Server, httpRequest: Http2RequestListener, onMoved: () => void): GrpcConnections {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  routeHttpOverHttp2(server, httpRequest);
  if (!NODE_HONOURS_STREAM_RESET_LIMITS) rotateBeforeResetLimit(server, onMoved);
  return injector;
}

/** Typed assignments, so the compiler checks that grpc-js's calls fit the core's call shapes. */
function grpcHandler(method: CoreMethod): UntypedHandleCall {
  switch (method.kind) {
    case 'unary': {
      const handler: handleUnaryCall<Buffer, Buffer> = method.handler;
      return handler;
    }
    case 'server-stream': {
      const handler: handleServerStreamingCall<Buffer, Buffer> = method.handler;
      return handler;
    }
    case 'bidi': {
      const handler: handleBidiStreamingCall<Buffer, Buffer> = method.handler;
      return handler;
    }
  }
}
