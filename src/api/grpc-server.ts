import { Server, type ServerInterceptor, type ServerOptions } from '@grpc/grpc-js';
import { createAuthService } from './auth';
import { createClusterService } from './cluster';
import type { ApiContext } from './context';
import type { ServiceBinding } from './forwarding-service';
import { applyStreamResetLimits, NODE_HONOURS_STREAM_RESET_LIMITS } from './grpc-http2-limits';
import { createKvService } from './kv';
import { createLeaseService } from './lease';
import { createMaintenanceService } from './maintenance';
import { createWatchService } from './watch';

// etcd accepts requests up to --max-request-bytes (1.5 MiB) plus gRPC
// overhead and answers larger ones itself; the proxy's own ceiling sits well
// above that so the upstream's error, not ours, reaches the client.
const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

const SERVER_OPTIONS: ServerOptions = {
  'grpc.max_receive_message_length': MAX_REQUEST_BYTES,
  'grpc.max_send_message_length': -1,
};

/** All etcd services this proxy answers, built from one context. */
export function createServiceBindings(ctx: ApiContext): ServiceBinding[] {
  return [
    createKvService(ctx),
    createWatchService(ctx),
    createLeaseService(ctx),
    createClusterService(ctx),
    createMaintenanceService(ctx),
    createAuthService(ctx),
  ];
}

/** A grpc-js server with every etcd service registered; connections are injected by the listener. */
export function createGrpcServer(ctx: ApiContext, interceptors: readonly ServerInterceptor[] = []): Server {
  const server = new Server({ ...SERVER_OPTIONS, interceptors: [...interceptors] });
  applyStreamResetLimits(server);
  if (!NODE_HONOURS_STREAM_RESET_LIMITS) {
    ctx.log.warn(
      { node: process.version },
      'this Node.js keeps HTTP/2 stream resets at 1000 per connection plus 33/s (Node 22.10+ lets the proxy raise that): a client cancelling calls faster on one connection has it closed with GOAWAY INTERNAL_ERROR',
    );
  }
  for (const { definition, implementation } of createServiceBindings(ctx)) server.addService(definition, implementation);
  return server;
}
