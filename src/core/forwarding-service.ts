import type { CoreContext } from './context';
import type { CoreMethod, CoreService, DuplexHandler, ServerStreamHandler, UnaryHandler } from './call';
import { forwardBidi, forwardServerStream, forwardUnary, type RpcRef } from './forward';
import { serviceMethods, shortServiceName, type EtcdServiceName } from '../etcd/proto';
import { requestKind, streamKind } from '../etcd/method-kinds';

export interface ForwardingServiceOptions {
  /** Handlers that do more than forward (built by the service's own file), of the method's kind. */
  readonly overrides?: Readonly<Record<string, UnaryHandler | DuplexHandler | ServerStreamHandler>>;
}

/** One RPC's names and what its calls do, from the one table of method kinds (a method it does not name writes). */
export function rpcRef(service: EtcdServiceName, method: string): RpcRef {
  return {
    service: shortServiceName(service),
    method,
    path: `/${service}/${method}`,
    kind: requestKind(service, method),
    streamKind: streamKind(service, method),
  };
}

/**
 * Builds a service whose every method forwards raw bytes upstream, unless the
 * service file overrides it. Every RPC of etcd's .proto is served, so a
 * client sees the upstream's answer (or its UNIMPLEMENTED) for each one.
 * Whether a call is refused as a write (read-only mode, upstream lost) or
 * retried as a read is not chosen here: forward.ts asks the method table.
 */
export function forwardingService(ctx: CoreContext, service: EtcdServiceName, options: ForwardingServiceOptions = {}): CoreService {
  const methods = new Map<string, CoreMethod>();
  for (const [name, method] of Object.entries(serviceMethods(service))) {
    const rpc = rpcRef(service, name);
    const override = options.overrides?.[name];
    if (method.requestStream && method.responseStream) {
      methods.set(name, { path: rpc.path, kind: 'bidi', handler: (override as DuplexHandler | undefined) ?? forwardBidi(ctx, rpc) });
    } else if (method.responseStream) {
      methods.set(name, { path: rpc.path, kind: 'server-stream', handler: (override as ServerStreamHandler | undefined) ?? forwardServerStream(ctx, rpc) });
    } else if (method.requestStream) {
      throw new Error(`etcd-cache-proxy: client-streaming ${rpc.path} is not handled`);
    } else {
      methods.set(name, { path: rpc.path, kind: 'unary', handler: (override as UnaryHandler | undefined) ?? forwardUnary(ctx, rpc) });
    }
  }
  return { name: service, methods };
}
