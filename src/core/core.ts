import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { LOOP_DETAILS, LOOP_LENGTH_HEADER, loopLength, VIA_HEADER } from '../upstream/loop-guard';
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

/**
 * The refusal of a call this proxy itself sent (it came back round a loop of
 * proxies: forwarding it would send it round forever), or null. The trailer
 * says how many proxies the loop holds, so the sender can tell "its upstream
 * is itself" from "a cycle of proxies" in its log.
 */
function loopRefusal(metadata: Metadata, instanceId: string): StatusObject | null {
  const length = loopLength(metadata.get(VIA_HEADER), instanceId);
  if (length === 0) return null;
  const trailers = new Metadata();
  trailers.set(LOOP_LENGTH_HEADER, String(length));
  return { code: status.FAILED_PRECONDITION, details: LOOP_DETAILS, metadata: trailers };
}

/** A streaming handler that first refuses a call that went round a loop, ending its stream with the refusal. */
function refusingLoopsOnStream<C extends ServerStreamCall | DuplexCall>(handler: (call: C) => void, instanceId: string): (call: C) => void {
  return (call) => {
    const refusal = loopRefusal(call.metadata, instanceId);
    if (refusal === null) handler(call);
    else call.emit('error', refusal);
  };
}

/** Every method of the service refuses, before its handler runs, a call that went round a loop. */
function refusingLoops(service: CoreService, instanceId: string): CoreService {
  const methods = new Map<string, CoreMethod>();
  for (const [name, method] of service.methods) {
    switch (method.kind) {
      case 'unary': {
        const { handler } = method;
        methods.set(name, {
          ...method,
          handler: (call, callback) => {
            const refusal = loopRefusal(call.metadata, instanceId);
            if (refusal === null) handler(call, callback);
            else callback(refusal);
          },
        });
        break;
      }
      case 'server-stream':
        methods.set(name, { ...method, handler: refusingLoopsOnStream(method.handler, instanceId) });
        break;
      case 'bidi':
        methods.set(name, { ...method, handler: refusingLoopsOnStream(method.handler, instanceId) });
        break;
    }
  }
  return { name: service.name, methods };
}
