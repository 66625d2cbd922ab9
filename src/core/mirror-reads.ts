import type { UnaryHandler } from './call';
import type { Metrics } from '../metrics';
import { toRevision } from '../etcd/wire';
import { encodeRangeResponse } from '../etcd/response-bytes';
import type { Mirror } from '../mirror/mirror';
import { keyspaceAt } from '../mirror/history-view';
import { evaluateRange, isAllAbove, validateRange, type WireRangeRequest } from '../mirror/range-query';
import { evaluateTxn, isReadOnlyTxn, isSerializableTxn, txnPermissionRanges, txnRanges, validateTxn, type WireTxnRequest } from '../mirror/txn-query';
import type { CoreContext } from './context';
import type { MirrorReadDeps } from './mirror-read-deps';
import type { RpcRef } from './forward';
import { mirrorHeaderBytes } from '../mirror/response-header';
import type { DecodedRead } from './request-memo';
import type { KeySpan, ResponseCache } from './response-cache';
import type { AnyMethodDefinition } from '../etcd/proto';
import { needsPermission, routeWithPermission } from './mirror-read-auth';
import { BarrierRoutes } from './mirror-read-barrier';
import { ReadReply } from './mirror-read-reply';
import { ReadRoutes, type Route, type Wait } from './mirror-read-route';
import { decodedReads, type ReadSpec } from './mirror-read-spec';

export { markStale } from './mirror-read-reply';

/**
 * Serves a read from the mirror as docs/design.md ("Consistency") says: serializable at
 * once; linearizable after a shared read barrier (forwarded when it cannot be
 * met in time); from the mirror, marked stale, while the upstream is lost or
 * cannot confirm. What the mirror cannot answer as etcd would goes upstream.
 * The steps: the route from the proxy's state (mirror-read-route.ts), the
 * caller's permission with auth on (mirror-read-auth.ts), the barrier
 * (mirror-read-barrier.ts) or the compaction check for a past revision, and
 * the reply (mirror-read-reply.ts).
 */
function mirrorRead<Req>(
  ctx: CoreContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
  spec: ReadSpec<Req>,
): UnaryHandler {
  const routes = new ReadRoutes(deps, spec);
  const barrier = new BarrierRoutes(deps, routes);
  const waitFor = (decoded: DecodedRead<Req>, wait: Wait): Promise<Route> =>
    wait === 'barrier' ? barrier.route(decoded) : wait === 'upstream' ? routes.afterUpstream(decoded) : wait === 'history' ? routes.afterCompactionCheck(decoded) : routes.afterFloor(decoded);
  const memo = decodedReads(method, spec);
  const reply = new ReadReply(ctx, deps, rpc, spec, forward);

  return (call, callback) => {
    const started = performance.now();
    const decoded = memo.get(call.request);
    if (decoded === undefined) {
      forward(call, callback);
      return;
    }
    const decision = routes.now(decoded);
    if (needsPermission(deps, decision)) reply.later(call, callback, decoded, routeWithPermission(deps, spec, call, decoded, decision, waitFor), started);
    else if (typeof decision === 'object') reply.dispatch(call, callback, decoded, decision, started);
    else reply.later(call, callback, decoded, waitFor(decoded, decision), started);
  };
}

/** KV.Range from the mirror. */
export function mirrorRange(
  ctx: CoreContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
): UnaryHandler {
  return mirrorRead<WireRangeRequest>(ctx, deps, rpc, method, forward, {
    isRead: () => true,
    covered: (request) => deps.ranges.coversRequest(request.key ?? Buffer.alloc(0), request.range_end ?? Buffer.alloc(0)),
    grayscale: (request) => deps.grayscale.touches(request.key ?? Buffer.alloc(0), request.range_end ?? Buffer.alloc(0)),
    refusal: validateRange,
    revision: (request) => toRevision(request.revision),
    permissionRanges: (request) => [{ key: request.key ?? Buffer.alloc(0), rangeEnd: request.range_end ?? Buffer.alloc(0) }],
    serializable: (request) => request.serializable === true,
    // A read at a given revision never changes; a current one changes with its keys.
    validity: (request) => ({ kind: 'spans', spans: toRevision(request.revision) !== 0 ? [] : [requestSpan(request.key, request.range_end)] }),
    answer(request) {
      const revision = toRevision(request.revision);
      const key = request.key ?? Buffer.alloc(0);
      const rangeEnd = request.range_end ?? Buffer.alloc(0);
      const reader =
        revision === 0 || revision >= deps.store.meta().revision
          ? deps.store
          : keyspaceAt(deps.store, revision, key, isAllAbove(rangeEnd) ? null : rangeEnd, rangeEnd.length === 0);
      const result = evaluateRange(reader, request);
      // The stored keys as they are, behind their field tags: nothing is decoded or encoded again.
      return encodeRangeResponse(null, result.kvs, result.more, result.count, result.keysOnly);
    },
  });
}

/** KV.Txn from the mirror when it only reads; any Txn with a write is forwarded. */
export function mirrorTxn(
  ctx: CoreContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
): UnaryHandler {
  return mirrorRead<WireTxnRequest>(ctx, deps, rpc, method, forward, {
    isRead: isReadOnlyTxn,
    covered: (request) => txnRanges(request).every((range) => deps.ranges.coversRequest(range.key ?? Buffer.alloc(0), range.range_end ?? Buffer.alloc(0))),
    grayscale: (request) => txnRanges(request).some((range) => deps.grayscale.touches(range.key ?? Buffer.alloc(0), range.range_end ?? Buffer.alloc(0))),
    refusal: (request) => validateTxn(request),
    revision: () => 0,
    permissionRanges: txnPermissionRanges,
    serializable: isSerializableTxn,
    // Its nested answers name the revision themselves.
    validity: () => ({ kind: 'revision-exact' }),
    answer: (request, meta) => evaluateTxn(deps.store, request, meta.revision, mirrorHeaderBytes(meta)),
  });
}

/** The keys a Range request names, as etcd reads key and range_end. */
function requestSpan(key: Buffer | undefined, rangeEnd: Buffer | undefined): KeySpan {
  const start = key ?? Buffer.alloc(0);
  const end = rangeEnd ?? Buffer.alloc(0);
  if (end.length === 0) return { key: start, end: null, single: true };
  return { key: start, end: isAllAbove(end) ? null : end, single: false };
}

/** Keeps the cache true to the mirror: events drop what they touch, a re-list or a discard drops everything. */
export function followMirror(cache: ResponseCache, mirror: Mirror, metrics: Metrics): void {
  const changed = (): void => {
    metrics.responseCacheBytes.set(cache.usedBytes);
  };
  mirror.on('applied', (_revision, events) => {
    cache.invalidate(events.map((event) => event.kv.key));
    changed();
  });
  for (const replaced of ['relisted', 'adopted', 'discarded', 'rederived'] as const) {
    mirror.on(replaced, () => {
      cache.clear();
      changed();
    });
  }
}
