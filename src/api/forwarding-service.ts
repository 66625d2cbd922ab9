import type { MethodDefinition, ServiceDefinition, UntypedHandleCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ApiContext } from './context';
import { forwardBidi, forwardServerStream, forwardUnary, type RpcRef, type UnaryForwardOptions } from './forward';
import { passBytes, serviceMethods, shortServiceName, type EtcdServiceName } from '../etcd/proto';

/** One etcd service as registered on the gRPC server: definition and handlers. */
export interface ServiceBinding {
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

export interface ForwardingServiceOptions {
  /** Unary methods that only read, and so may be retried on another member. */
  readonly reads: ReadonlySet<string>;
  /** Methods that change the keyspace or leases: refused in read-only mode and while the upstream is lost. */
  readonly writes?: ReadonlySet<string>;
  /** Handlers that do more than forward (built by the service's own file). */
  readonly overrides?: Readonly<Record<string, UntypedHandleCall>>;
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
export function forwardingService(
  ctx: ApiContext,
  service: EtcdServiceName,
  options: ForwardingServiceOptions,
): ServiceBinding {
  const methods = serviceMethods(service);
  const definition: Record<string, MethodDefinition<Buffer, Buffer>> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(methods)) {
    definition[name] = {
      path: method.path,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: passBytes,
      requestDeserialize: passBytes,
      responseSerialize: passBytes,
      responseDeserialize: passBytes,
    };
    const rpc = rpcRef(service, name);
    const override = options.overrides?.[name];
    if (override !== undefined) implementation[name] = override;
    else if (method.requestStream && method.responseStream) implementation[name] = forwardBidi(ctx, rpc, options.writes?.has(name) === true);
    else if (method.responseStream) implementation[name] = forwardServerStream(ctx, rpc);
    else if (method.requestStream) throw new Error(`etcd-cache-proxy: client-streaming ${rpc.path} is not handled`);
    else implementation[name] = forwardUnary(ctx, rpc, forwardOptions(ctx, name, options));
  }
  return { definition: definition as ServiceDefinition, implementation };
}
