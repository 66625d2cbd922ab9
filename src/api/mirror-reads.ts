import { Metadata, status, type handleUnaryCall, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import type { StaleReads } from '../config';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { toRevision, toWireKeyValue } from '../mirror/codec';
import type { Mirror } from '../mirror/mirror';
import { evaluateRange, validateRange, type WireRangeRequest } from '../mirror/range-query';
import { READ_BARRIER_TIMEOUT_MS, type ReadBarrier } from '../mirror/read-barrier';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import type { ApiContext } from './context';
import { ProxyError, toStatus } from './errors';
import { observeCall, type RpcRef } from './forward';
import type { AnyMethodDefinition } from './proto';

/** Response metadata (and HTTP header) marking an answer the upstream could not confirm. */
export const STALE_HEADER = 'x-etcd-cache-proxy-stale';

export interface MirrorReadDeps {
  readonly store: MirrorStore;
  readonly mirror: Mirror;
  readonly liveness: Liveness;
  readonly barrier: ReadBarrier;
  readonly staleReads: StaleReads;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/** How one Range is answered. */
type Route = { kind: 'forward' } | { kind: 'mirror'; stale: boolean } | { kind: 'refuse'; error: ProxyError };

/**
 * KV.Range served from the mirror as contract section 3 says: serializable
 * at once; linearizable after a shared read barrier (or forwarded when the
 * barrier cannot be met in time); from the mirror, marked stale, while the
 * upstream is lost. What the mirror cannot answer as etcd would (another
 * revision, a request etcd refuses) goes upstream.
 */
export function mirrorRange(
  ctx: ApiContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: handleUnaryCall<Buffer, Buffer>,
): handleUnaryCall<Buffer, Buffer> {
  const answer = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>, request: WireRangeRequest, stale: boolean, started: bigint): void => {
    const result = evaluateRange(deps.store, request);
    const meta = deps.store.meta();
    const identity = meta.identity;
    // Zero values are left out, as etcd's encoder leaves them out (protobufjs would write them).
    const response = {
      header: {
        cluster_id: identity?.cluster_id ?? '0',
        member_id: identity?.member_id ?? '0',
        revision: String(meta.revision),
        raft_term: identity?.raft_term ?? '0',
      },
      ...(result.kvs.length > 0 ? { kvs: result.kvs.map((kv) => toWireKeyValue(kv, result.keysOnly)) } : {}),
      ...(result.more ? { more: true } : {}),
      ...(result.count > 0 ? { count: String(result.count) } : {}),
    };
    if (stale) {
      const metadata = new Metadata();
      metadata.set(STALE_HEADER, 'true');
      call.sendMetadata(metadata);
      deps.metrics.staleReads.inc();
    }
    observeCall(ctx, rpc, status.OK, started, 'mirror');
    callback(null, method.responseSerialize(response));
  };

  const refuse = (callback: sendUnaryData<Buffer>, error: ProxyError, started: bigint): void => {
    observeCall(ctx, rpc, error.code, started, 'proxy');
    callback(toStatus(error));
  };

  const staleRoute = (): Route =>
    deps.staleReads === 'deny' ? { kind: 'refuse', error: new ProxyError('staleDenied') } : { kind: 'mirror', stale: true };

  const route = async (request: WireRangeRequest): Promise<Route> => {
    if (deps.mirror.authRequired()) return { kind: 'forward' };
    const lost = deps.liveness.isLost();
    const refusal = validateRange(request);
    if (refusal !== null) return lost ? { kind: 'refuse', error: new ProxyError(refusal) } : { kind: 'forward' };
    if (!deps.mirror.hasData()) return lost ? { kind: 'refuse', error: new ProxyError('neverSynced') } : { kind: 'forward' };
    const revision = toRevision(request.revision);
    if (revision !== 0) {
      if (!lost) return { kind: 'forward' };
      if (revision > deps.mirror.revision()) return { kind: 'refuse', error: new ProxyError('futureRevision') };
      if (revision < deps.mirror.revision()) return { kind: 'refuse', error: new ProxyError('compacted') };
    }
    if (lost) return staleRoute();
    if (request.serializable === true) return { kind: 'mirror', stale: false };
    let upstreamRevision: number;
    try {
      upstreamRevision = await deps.barrier.upstreamRevision();
    } catch {
      // The upstream cannot confirm freshness right now: what the mirror holds is the best answer.
      return staleRoute();
    }
    const reached = await deps.mirror.waitForRevision(upstreamRevision, READ_BARRIER_TIMEOUT_MS);
    return reached ? { kind: 'mirror', stale: false } : { kind: 'forward' };
  };

  return (call, callback) => {
    const started = process.hrtime.bigint();
    let request: WireRangeRequest;
    try {
      request = method.requestDeserialize(call.request) as WireRangeRequest;
    } catch {
      forward(call, callback);
      return;
    }
    route(request).then(
      (decision) => {
        if (decision.kind === 'forward') forward(call, callback);
        else if (decision.kind === 'refuse') refuse(callback, decision.error, started);
        else answer(call, callback, request, decision.stale, started);
      },
      (error: unknown) => {
        deps.log.error({ err: error }, 'mirror read failed');
        refuse(callback, new ProxyError('internal', { cause: error }), started);
      },
    );
  };
}
