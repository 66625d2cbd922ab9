import { Metadata, status } from '@grpc/grpc-js';
import type { UnaryCall, UnaryCallback, UnaryHandler } from './call';
import type { Metrics } from '../metrics';
import { toRevision } from '../etcd/wire';
import { encodeHeaderField, encodeRangeResponse } from '../etcd/response-bytes';
import type { Mirror } from '../mirror/mirror';
import { isRetained, keyspaceAt } from '../mirror/history-view';
import { evaluateRange, isAllAbove, validateRange, type WireRangeRequest } from '../mirror/range-query';
import { isAuthRefusal } from '../auth/auth-gate';
import type { KeyRangeAsked } from '../auth/directory';
import { READ_BARRIER_TIMEOUT_MS } from '../mirror/read-barrier';
import { evaluateTxn, isReadOnlyTxn, isSerializableTxn, txnPermissionRanges, txnRanges, validateTxn, type WireTxnRequest } from '../mirror/txn-query';
import type { StoreMeta } from '../store/meta';
import type { CoreContext } from './context';
import type { MirrorReadDeps } from './mirror-read-deps';
import { ProxyError, toStatus, type EtcdErrorName } from '../etcd/errors';
import { observeCall, type RpcRef } from './forward';
import { STALE_HEADER } from '../etcd/metadata';
import { mirrorHeaderBytes } from '../mirror/response-header';
import { RequestMemo, type DecodedRead } from './request-memo';
import type { KeySpan, ResponseCache, Validity } from './response-cache';
import type { AnyMethodDefinition } from '../etcd/proto';




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
  /** True when the read may name a key under a grayscale prefix. */
  grayscale(request: Req): boolean;
  /** What etcd would refuse, or what the mirror cannot answer itself. */
  refusal(request: Req): EtcdErrorName | null;
  /** A revision other than 0: a read of the keyspace as it was then. */
  revision(request: Req): number;
  /** Every key range etcd checks read permission on, or null when the mirror leaves the decision to etcd. */
  permissionRanges(request: Req): KeyRangeAsked[] | null;
  serializable(request: Req): boolean;
  /**
   * The encoded response at the mirror's current content (`meta`): without
   * its header field when the validity is `spans` (the caller puts the
   * current header in front), whole when it is `revision-exact`.
   */
  answer(request: Req, meta: StoreMeta): Buffer;
  /** How long the answer stays true (see ResponseCache). */
  validity(request: Req): Validity;
}

/** How one read is answered. */
type Route = { kind: 'forward' } | { kind: 'mirror'; stale: boolean } | { kind: 'refuse'; error: ProxyError };
const FORWARD: Route = { kind: 'forward' };
const FRESH: Route = { kind: 'mirror', stale: false };
/** What a read waits for before its route is known: etcd's current revision, or whether etcd still holds a past one. */
type Wait = 'barrier' | 'history';
const EMPTY = Buffer.alloc(0);

/**
 * Serves a read from the mirror as docs/design.md ("Consistency") says: serializable at
 * once; linearizable after a shared read barrier (forwarded when it cannot be
 * met in time); from the mirror, marked stale, while the upstream is lost or
 * cannot confirm. What the mirror cannot answer as etcd would goes upstream.
 */
function mirrorRead<Req>(
  ctx: CoreContext,
  deps: MirrorReadDeps,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
  spec: ReadSpec<Req>,
): UnaryHandler {
  const cache = deps.cache;
  const kind = rpc.path;
  const staleRoute = (): Route =>
    deps.staleReads === 'deny' ? { kind: 'refuse', error: new ProxyError('staleDenied') } : { kind: 'mirror', stale: true };

  /**
   * What a read under a grayscale prefix gets where others go to etcd: etcd
   * holds versions this machine withholds, so the mirror answers (marked stale
   * when it cannot vouch for being current), or etcd's error for what the
   * view cannot tell.
   */
  const keptLocal = (decoded: DecodedRead<Req>, stale: boolean): Route => {
    if (!deps.mirror.hasData()) return { kind: 'refuse', error: new ProxyError('grayscaleUnsynced') };
    const revision = decoded.revision;
    if (revision !== 0 && !isRetained(deps.store, revision)) {
      return { kind: 'refuse', error: new ProxyError(revision > deps.mirror.revision() ? 'futureRevision' : 'compacted') };
    }
    return stale ? staleRoute() : FRESH;
  };
  /** May name a key under a grayscale prefix (settings change on reload: not kept with the decoded request). */
  const isGrayscale = (decoded: DecodedRead<Req>): boolean => deps.grayscale.enabled && spec.grayscale(decoded.request);
  const upstream = (decoded: DecodedRead<Req>, stale = false): Route => (isGrayscale(decoded) ? keptLocal(decoded, stale) : FORWARD);

  /** The route decided from the request and the proxy's state alone, or what it must wait for first. */
  const routeNow = (decoded: DecodedRead<Req>): Route | Wait => {
    // Auth that the mirror cannot serve leaves every decision, and every answer, to etcd.
    // Whether the mirror holds the keys is asked each time: what it holds follows its user's permissions.
    if (!decoded.read || !spec.covered(decoded.request) || deps.mirror.authRequired()) return FORWARD;
    const lost = deps.liveness.isLost();
    const refusal = decoded.refusal;
    if (refusal !== null) return lost ? { kind: 'refuse', error: new ProxyError(refusal) } : FORWARD;
    if (!deps.mirror.hasData()) return lost ? { kind: 'refuse', error: new ProxyError('neverSynced') } : upstream(decoded);
    const revision = decoded.revision;
    if (revision !== 0) {
      // The keyspace at a past revision never changes: the log answers it without a barrier.
      if (isRetained(deps.store, revision)) {
        if (lost) return staleRoute();
        // etcd may have compacted past it since the proxy last heard; the current revision it cannot have.
        return revision < deps.store.meta().revision ? 'history' : FRESH;
      }
      if (!lost) return upstream(decoded);
      return { kind: 'refuse', error: new ProxyError(revision > deps.mirror.revision() ? 'futureRevision' : 'compacted') };
    }
    if (lost) return staleRoute();
    if (decoded.serializable) return FRESH;
    // A prefix mirror's revision moves only with its own keys' events, so it may never reach
    // the upstream's; without progress responses it can trust, such reads go upstream.
    // This machine's view has no upstream to be linearizable with: it answers as it stands.
    if (!deps.ranges.whole) return upstream(decoded);
    return 'barrier';
  };

  /** A read of a past revision the log holds: the log's answer unless etcd has compacted it, which etcd then says itself. */
  const routeAfterCompactionCheck = async (revision: number): Promise<Route> => {
    const mayBeCompacted = await deps.compaction.mayBeCompacted(revision);
    if (mayBeCompacted === true) return FORWARD;
    return mayBeCompacted === undefined ? staleRoute() : FRESH;
  };

  /** A linearizable read: the mirror answers once it holds what the upstream holds now. */
  const afterBarrier = async (barrier: Promise<number>, decoded: DecodedRead<Req>): Promise<Route> => {
    let upstreamRevision: number;
    try {
      upstreamRevision = await barrier;
    } catch (error) {
      // Auth went on upstream: from now on etcd decides, with the client's own token.
      if (isAuthRefusal(error)) {
        deps.auth.refused();
        return FORWARD;
      }
      // The upstream cannot confirm freshness right now: what the mirror holds is the best answer.
      return staleRoute();
    }
    const reached = await deps.mirror.waitForRevision(upstreamRevision, READ_BARRIER_TIMEOUT_MS);
    return reached ? FRESH : upstream(decoded, true);
  };
  /** Every read waiting on one barrier call gets one route, worked out once (grayscale reads apart: theirs differs). */
  const routesByBarrier = [new WeakMap<Promise<number>, Promise<Route>>(), new WeakMap<Promise<number>, Promise<Route>>()] as const;
  const routeAfterBarrier = (decoded: DecodedRead<Req>): Promise<Route> => {
    const barrier = deps.barrier.upstreamRevision();
    const routes = routesByBarrier[isGrayscale(decoded) ? 1 : 0];
    let route = routes.get(barrier);
    if (route === undefined) {
      route = afterBarrier(barrier, decoded);
      routes.set(barrier, route);
    }
    return route;
  };

  /** The caller's permission first (etcd's answer when it has none), then the route the read would take anyway. */
  const routeWithPermission = async (call: UnaryCall, decoded: DecodedRead<Req>, next: Route | Wait): Promise<Route> => {
    const ranges = spec.permissionRanges(decoded.request);
    if (ranges === null) return FORWARD;
    const permission = await deps.directory.decide(call.metadata, ranges);
    if (permission.kind === 'forward') return FORWARD;
    if (permission.kind === 'refuse') return { kind: 'refuse', error: new ProxyError(permission.error) };
    if (typeof next === 'object') return next;
    return next === 'barrier' ? routeAfterBarrier(decoded) : routeAfterCompactionCheck(decoded.revision);
  };

  /** Requests as decoded, by their bytes: gateways send the same few reads over and over. */
  const memo = new RequestMemo<Req>((bytes, id) => {
    const request = method.requestDeserialize(bytes) as Req;
    const read = spec.isRead(request);
    return {
      request,
      id,
      read,
      refusal: read ? spec.refusal(request) : null,
      revision: read ? spec.revision(request) : 0,
      serializable: read && spec.serializable(request),
    };
  });

  const answer = (callback: UnaryCallback, call: UnaryCall, decoded: DecodedRead<Req>, stale: boolean, started: number): void => {
    const meta = deps.store.meta();
    const request = decoded.request;
    const header = (): Buffer => encodeHeaderField(mirrorHeaderBytes(meta));
    let response = cache.get(kind, decoded.id, meta.revision, header);
    if (response === undefined) {
      deps.metrics.cacheResults.count('miss');
      const validity = spec.validity(request);
      const answered = spec.answer(request, meta);
      response =
        validity.kind === 'spans'
          ? cache.set(kind, decoded.id, meta.revision, validity, header(), answered)
          : cache.set(kind, decoded.id, meta.revision, validity, EMPTY, answered);
      deps.metrics.responseCacheBytes.set(cache.usedBytes);
    } else {
      deps.metrics.cacheResults.count('hit');
    }
    if (stale) {
      markStale(call);
      deps.metrics.staleReads.inc();
    }
    deps.auth.noteServed();
    observeCall(ctx, rpc, status.OK, started, 'mirror');
    callback(null, response);
  };

  const refuse = (callback: UnaryCallback, error: ProxyError, started: number): void => {
    observeCall(ctx, rpc, error.code, started, 'proxy');
    callback(toStatus(error));
  };

  const dispatch = (call: UnaryCall, callback: UnaryCallback, decoded: DecodedRead<Req>, decision: Route, started: number): void => {
    if (decision.kind === 'forward') {
      // A read of mirrored keys that etcd answers now is one the mirror answers during an outage:
      // what the proxy knows of its token and user is kept as fresh as if the mirror had answered.
      if (deps.mirror.authEnabled() && decoded.read && spec.covered(decoded.request)) deps.directory.keepFresh(call.metadata);
      forward(call, callback);
    }
    else if (decision.kind === 'refuse') refuse(callback, decision.error, started);
    else answer(callback, call, decoded, decision.stale, started);
  };

  return (call, callback) => {
    const started = performance.now();
    const decoded = memo.get(call.request);
    if (decoded === undefined) {
      forward(call, callback);
      return;
    }
    const decision = routeNow(decoded);
    // With auth on, anything the mirror would answer first needs the caller's permission, as etcd checks it.
    if (decision !== FORWARD && (typeof decision !== 'object' || decision.kind === 'mirror') && deps.mirror.authEnabled()) {
      routeWithPermission(call, decoded, decision).then(
        (later) => dispatch(call, callback, decoded, later, started),
        (error: unknown) => {
          deps.log.error({ err: error }, 'mirror read failed');
          refuse(callback, new ProxyError('internal', { cause: error }), started);
        },
      );
      return;
    }
    if (typeof decision === 'object') {
      dispatch(call, callback, decoded, decision, started);
      return;
    }
    (decision === 'barrier' ? routeAfterBarrier(decoded) : routeAfterCompactionCheck(decoded.revision)).then(
      (later) => dispatch(call, callback, decoded, later, started),
      (error: unknown) => {
        deps.log.error({ err: error }, 'mirror read failed');
        refuse(callback, new ProxyError('internal', { cause: error }), started);
      },
    );
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
