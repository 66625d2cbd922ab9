import type { ApiContext } from './context';
import type { CoreMethod, CoreService, DuplexHandler, ServerStreamHandler, UnaryHandler } from './call';
import { forwardBidi, forwardServerStream, forwardUnary, type RpcRef, type UnaryForwardOptions } from './forward';
import { serviceMethods, shortServiceName, type EtcdServiceName } from '../etcd/proto';

export interface ForwardingServiceOptions {
  /** Unary methods that only read, and so may be retried on another member. */
  readonly reads: ReadonlySet<string>;
  /** Methods that change the keyspace or leases: refused in read-only mode and while the upstream is lost. */
  readonly writes?: ReadonlySet<string>;
  /** Handlers that do more than forward (built by the service's own file), of the method's kind. */
  readonly overrides?: Readonly<Record<string, UnaryHandler | DuplexHandler | ServerStreamHandler>>;
}

/** How one unary method is forwarded: retried if a read, admitted if a write. */
export function forwardOptions(ctx: ApiContext, name: string, options: ForwardingServiceOptions): UnaryForwardOptions {
  if (options.writes?.has(name) !== true) return { idempotent: options.reads.has(name) };
  return { idempotent: false, admit: () => ctx.writes.admit() };
}

export function rpcRef(service: EtcdServiceName, method: string): RpcRef {
  return { service: shortServiceName(service), method, path: `/${service}/${method}` };
}

/**
 * Builds a service whose every method forwards raw bytes upstream, unless the
 * service file overrides it. Every RPC of etcd's .proto is served, so a
 * client sees the upstream's answer (or its UNIMPLEMENTED) for each one.
 */
export function forwardingService(ctx: ApiContext, service: EtcdServiceName, options: ForwardingServiceOptions): CoreService {
  const methods = new Map<string, CoreMethod>();
  for (const [name, method] of Object.entries(serviceMethods(service))) {
    const rpc = rpcRef(service, name);
    const override = options.overrides?.[name];
    if (method.requestStream && method.responseStream) {
      methods.set(name, { path: rpc.path, kind: 'bidi', handler: (override as DuplexHandler | undefined) ?? forwardBidi(ctx, rpc, options.writes?.has(name) === true) });
    } else if (method.responseStream) {
      methods.set(name, { path: rpc.path, kind: 'server-stream', handler: (override as ServerStreamHandler | undefined) ?? forwardServerStream(ctx, rpc) });
    } else if (method.requestStream) {
      throw new Error(`etcd-cache-proxy: client-streaming ${rpc.path} is not handled`);
    } else {
      methods.set(name, { path: rpc.path, kind: 'unary', handler: (override as UnaryHandler | undefined) ?? forwardUnary(ctx, rpc, forwardOptions(ctx, name, options)) });
    }
  }
  return { name: service, methods };
}
