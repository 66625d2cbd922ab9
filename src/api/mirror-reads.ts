import { Metadata, status } from '@grpc/grpc-js';
import type { UnaryCall, UnaryCallback, UnaryHandler } from './call';
import type { StaleReads } from '../config';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { toRevision } from '../etcd/wire';
import { encodeRangeResponse } from '../etcd/response-bytes';
import type { Mirror } from '../mirror/mirror';
import { isRetained, keyspaceAt } from '../mirror/history-view';
import { evaluateRange, isAllAbove, validateRange, type WireRangeRequest } from '../mirror/range-query';
import { isAuthRefusal, type AuthGate } from '../mirror/auth-gate';
import { READ_BARRIER_TIMEOUT_MS, type ReadBarrier } from '../mirror/read-barrier';
import type { MirroredRanges } from '../mirror/mirrored-ranges';
import { evaluateTxn, isReadOnlyTxn, isSerializableTxn, txnRanges, validateTxn, type WireTxnRequest } from '../mirror/txn-query';
import type { StoreMeta } from '../store/meta';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import type { ApiContext } from './context';
import { ProxyError, toStatus, type EtcdErrorName } from '../etcd/errors';
import { observeCall, type RpcRef } from './forward';
import { STALE_HEADER } from '../etcd/metadata';
import { mirrorHeaderBytes } from '../mirror/response-header';
import { ResponseCache } from './response-cache';
import type { AnyMethodDefinition } from '../etcd/proto';


export interface MirrorReadDeps {
  readonly store: MirrorStore;
  readonly mirror: Mirror;
  readonly ranges: MirroredRanges;
  readonly liveness: Liveness;
  readonly barrier: ReadBarrier;
  /** Told when the barrier's anonymous read is refused: auth went on upstream. */
  readonly auth: AuthGate;
  readonly staleReads: StaleReads;
  readonly metrics: Metrics;
  readonly log: Logger;
}


/** Tells the client, in response metadata, that the upstream did not confirm this answer. */
export function markStale(call: UnaryCall): void {
  const metadata = new Metadata();
  metadata.set(STALE_HEADER, 'true');
  call.sendMetadata(metadata);
}

/** What one kind of read request needs to be served from the mirror. */
interface ReadSpec<Req> {
  /** False: not a read at all (a Txn with writes); forwarded as it is. */
  isRead(request: Req): boolean;
  /** True when every key the read may name is mirrored. */
  covered(request: Req): boolean;
  /** What etcd would refuse, or what the mirror cannot answer itself. */
  refusal(request: Req): EtcdErrorName | null;
  /** A revision other than 0: a read of the keyspace as it was then. */
  revision(request: Req): number;
  serializable(request: Req): boolean;
  /** The encoded response, header included, at the mirror's current content (`meta`). */
  answer(request: Req, meta: StoreMeta): Buffer;
}

/** How one read is answered. */
type Route = { kind: 'forward' } | { kind: 'mirror'; stale: boolean } | { kind: 'refuse'; error: ProxyError };

/**
 * Serves a read from the mirror as contract section 3 says: serializable at
 * once; linearizable after a shared read barrier (forwarded when it cannot be
 * met in time); from the mirror, marked stale, while the upstream is lost or
 * cannot confirm. What the mirror cannot answer as etcd would goes upstream.
 */
function mirrorRead<Req>(
  ctx: ApiContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
  spec: ReadSpec<Req>,
): UnaryHandler {
  const cache = new ResponseCache();
  deps.mirror.on('relisted', () => cache.clear());
  const staleRoute = (): Route =>
    deps.staleReads === 'deny' ? { kind: 'refuse', error: new ProxyError('staleDenied') } : { kind: 'mirror', stale: true };

  const route = async (request: Req): Promise<Route> => {
    if (deps.mirror.authRequired() || !spec.isRead(request) || !spec.covered(request)) return { kind: 'forward' };
    const lost = deps.liveness.isLost();
    const refusal = spec.refusal(request);
    if (refusal !== null) return lost ? { kind: 'refuse', error: new ProxyError(refusal) } : { kind: 'forward' };
    if (!deps.mirror.hasData()) return lost ? { kind: 'refuse', error: new ProxyError('neverSynced') } : { kind: 'forward' };
    const revision = spec.revision(request);
    if (revision !== 0) {
      // The keyspace at a past revision never changes: the log answers it without a barrier.
      if (isRetained(deps.store, revision)) return lost ? staleRoute() : { kind: 'mirror', stale: false };
      if (!lost) return { kind: 'forward' };
      return { kind: 'refuse', error: new ProxyError(revision > deps.mirror.revision() ? 'futureRevision' : 'compacted') };
    }
    if (lost) return staleRoute();
    if (spec.serializable(request)) return { kind: 'mirror', stale: false };
    // A prefix mirror's revision moves only with its own keys' events, so it may never reach
    // the upstream's; without progress responses it can trust, such reads go upstream.
    if (!deps.ranges.whole) return { kind: 'forward' };
    let upstreamRevision: number;
    try {
      upstreamRevision = await deps.barrier.upstreamRevision();
    } catch (error) {
      // Auth went on upstream: from now on etcd decides, with the client's own token.
      if (isAuthRefusal(error)) {
        deps.auth.refused();
        return { kind: 'forward' };
      }
      // The upstream cannot confirm freshness right now: what the mirror holds is the best answer.
      return staleRoute();
    }
    const reached = await deps.mirror.waitForRevision(upstreamRevision, READ_BARRIER_TIMEOUT_MS);
    return reached ? { kind: 'mirror', stale: false } : { kind: 'forward' };
  };

  const answer = (call: UnaryCall, callback: UnaryCallback, request: Req, stale: boolean, started: bigint): void => {
    const meta = deps.store.meta();
    let response = cache.get(call.request, meta.revision);
    if (response === undefined) {
      response = spec.answer(request, meta);
      cache.set(call.request, meta.revision, response);
    }
    if (stale) {
      markStale(call);
      deps.metrics.staleReads.inc();
    }
    observeCall(ctx, rpc, status.OK, started, 'mirror');
    callback(null, response);
  };

  const refuse = (callback: UnaryCallback, error: ProxyError, started: bigint): void => {
    observeCall(ctx, rpc, error.code, started, 'proxy');
    callback(toStatus(error));
  };

  return (call, callback) => {
    const started = process.hrtime.bigint();
    let request: Req;
    try {
      request = method.requestDeserialize(call.request) as Req;
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

/** KV.Range from the mirror. */
export function mirrorRange(
  ctx: ApiContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
): UnaryHandler {
  return mirrorRead<WireRangeRequest>(ctx, deps, rpc, method, forward, {
    isRead: () => true,
    covered: (request) => deps.ranges.coversRequest(request.key ?? Buffer.alloc(0), request.range_end ?? Buffer.alloc(0)),
    refusal: validateRange,
    revision: (request) => toRevision(request.revision),
    serializable: (request) => request.serializable === true,
    answer(request, meta) {
      const revision = toRevision(request.revision);
      const key = request.key ?? Buffer.alloc(0);
      const rangeEnd = request.range_end ?? Buffer.alloc(0);
      const reader =
        revision === 0 || revision >= deps.store.meta().revision
          ? deps.store
          : keyspaceAt(deps.store, revision, key, isAllAbove(rangeEnd) ? null : rangeEnd, rangeEnd.length === 0);
      const result = evaluateRange(reader, request);
      // The stored keys as they are, behind their field tags: nothing is decoded or encoded again.
      return encodeRangeResponse(mirrorHeaderBytes(meta), result.kvs, result.more, result.count, result.keysOnly);
    },
  });
}

/** KV.Txn from the mirror when it only reads; any Txn with a write is forwarded. */
export function mirrorTxn(
  ctx: ApiContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
): UnaryHandler {
  return mirrorRead<WireTxnRequest>(ctx, deps, rpc, method, forward, {
    isRead: isReadOnlyTxn,
    covered: (request) => txnRanges(request).every((range) => deps.ranges.coversRequest(range.key ?? Buffer.alloc(0), range.range_end ?? Buffer.alloc(0))),
    refusal: (request) => validateTxn(request),
    revision: () => 0,
    serializable: isSerializableTxn,
    answer: (request, meta) => evaluateTxn(deps.store, request, meta.revision, mirrorHeaderBytes(meta)),
  });
}
