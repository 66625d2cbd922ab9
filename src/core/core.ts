import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { LOOP_DETAILS, VIA_HEADER } from '../upstream/loop-guard';
import { createAuthService } from './auth';
import type { CoreMethod, CoreService, DuplexCall, ServerStreamCall } from './call';
import { createClusterService } from './cluster';
import type { CoreContext } from './context';
import { createKvService } from './kv';
import { createLeaseService } from './lease';
import { createMaintenanceService } from './maintenance';
import { createWatchService } from './watch';

/**
 * Every etcd RPC the proxy answers, once, for both transports: the gRPC
 * adapter registers these handlers with grpc-js, the JSON gateway calls them
 * directly.
 */
export interface Core {
  readonly services: readonly CoreService[];
  /** The method at a gRPC path ("/etcdserverpb.KV/Range"), or undefined. */
  method(path: string): CoreMethod | undefined;
  /**
   * The JSON gateway's form of an answer, made by `make` and kept with the
   * encoded answer while that one is kept for repeated reads.
   */
  answerJson(answer: Buffer, make: () => Buffer): Buffer;
}

export interface CoreOptions {
  /** This proxy's ID, which every call it sends upstream carries (loop-guard.ts). */
  readonly instanceId: string;
}

export function createCore(ctx: CoreContext, options: CoreOptions): Core {
  const services = [
    createKvService(ctx),
    createWatchService(ctx),
    createLeaseService(ctx),
    createClusterService(ctx),
    createMaintenanceService(ctx),
    createAuthService(ctx),
  ].map((service) => refusingLoops(service, options.instanceId));
  const byPath = new Map<string, CoreMethod>();
  for (const service of services) for (const method of service.methods.values()) byPath.set(method.path, method);
  const cache = ctx.mirrorReads?.cache;
  return {
    services,
    method: (path) => byPath.get(path),
    answerJson: (answer, make) => (cache === undefined ? make() : cache.json(answer, make)),
  };
}

/** True when this proxy itself sent the call: forwarding it would send it to itself forever. */
function cameFromSelf(metadata: Metadata, instanceId: string): boolean {
  // Several hops' markers may arrive as one comma-joined value.
  return metadata.get(VIA_HEADER).some((value) => String(value).split(',').some((id) => id.trim() === instanceId));
}

const loopStatus = (): StatusObject => ({ code: status.FAILED_PRECONDITION, details: LOOP_DETAILS, metadata: new Metadata() });

/** Every method of the service refuses, before its handler runs, a call that went round a loop. */
function refusingLoops(service: CoreService, instanceId: string): CoreService {
  const methods = new Map<string, CoreMethod>();
  for (const [name, method] of service.methods) {
    switch (method.kind) {
      case 'unary': {
        const { handler } = method;
        methods.set(name, { ...method, handler: (call, callback) => (cameFromSelf(call.metadata, instanceId) ? callback(loopStatus()) : handler(call, callback)) });
        break;
      }
      case 'server-stream': {
        const { handler } = method;
        methods.set(name, { ...method, handler: (call: ServerStreamCall) => (cameFromSelf(call.metadata, instanceId) ? void call.emit('error', loopStatus()) : handler(call)) });
        break;
      }
      case 'bidi': {
        const { handler } = method;
        methods.set(name, { ...method, handler: (call: DuplexCall) => (cameFromSelf(call.metadata, instanceId) ? void call.emit('error', loopStatus()) : handler(call)) });
        break;
      }
    }
  }
  return { name: service.name, methods };
}
