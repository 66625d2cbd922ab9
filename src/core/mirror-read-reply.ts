import { Metadata, status } from '@grpc/grpc-js';
import type { UnaryCall, UnaryCallback, UnaryHandler } from './call';
import { encodeHeaderField } from '../etcd/response-bytes';
import { ProxyError, toStatus } from '../etcd/errors';
import { STALE_HEADER } from '../etcd/metadata';
import { isRetained } from '../mirror/history-view';
import { mirrorHeaderBytes } from '../mirror/response-header';
import type { CoreContext } from './context';
import { observeCall, type RpcRef } from './forward';
import type { MirrorReadDeps } from './mirror-read-deps';
import type { Route } from './mirror-read-route';
import type { ReadSpec } from './mirror-read-spec';
import type { DecodedRead } from './request-memo';

const EMPTY = Buffer.alloc(0);

/** Tells the client, in response metadata, that the upstream did not confirm this answer. */
export function markStale(call: UnaryCall): void {
  const metadata = new Metadata();
  metadata.set(STALE_HEADER, 'true');
  call.sendMetadata(metadata);
}

/** Carries out a read's route: forwards it, refuses it, or answers it from the mirror (through the answer cache). */
export class ReadReply<Req> {
  constructor(
    private readonly ctx: CoreContext,
    private readonly deps: MirrorReadDeps,
    private readonly rpc: RpcRef,
    private readonly spec: ReadSpec<Req>,
    private readonly forward: UnaryHandler,
  ) {}

  /** Follows `route` once it is known; a route that could not be worked out is an internal error. */
  later(call: UnaryCall, callback: UnaryCallback, decoded: DecodedRead<Req>, route: Promise<Route>, started: number): void {
    route.then(
      (known) => this.dispatch(call, callback, decoded, known, started),
      (error: unknown) => {
        this.deps.log.error({ err: error }, 'mirror read failed');
        this.refuse(callback, new ProxyError('internal', { cause: error }), started);
      },
    );
  }

  dispatch(call: UnaryCall, callback: UnaryCallback, decoded: DecodedRead<Req>, route: Route, started: number): void {
    if (route.kind === 'forward') {
      // A read of mirrored keys that etcd answers now is one the mirror answers during an outage:
      // what the proxy knows of its token and user is kept as fresh as if the mirror had answered.
      if (this.deps.mirror.authEnabled() && decoded.read && this.spec.covered(decoded.request)) this.deps.directory.keepFresh(call.metadata);
      this.forward(call, callback);
    } else if (route.kind === 'refuse') this.refuse(callback, route.error, started);
    else this.answer(callback, call, decoded, route.stale, started);
  }

  private answer(callback: UnaryCallback, call: UnaryCall, decoded: DecodedRead<Req>, stale: boolean, started: number): void {
    const { deps, spec } = this;
    const cache = deps.cache;
    const kind = this.rpc.path;
    const meta = deps.store.meta();
    // The store went back below what this process was told: it was replaced (etcd restored, or
    // another cluster) and a --workers process has not heard so yet. Neither the kept answers nor
    // the store (empty, or a list in the making) are the mirror this process routed to: etcd,
    // which the replacement has just answered, answers instead.
    if (meta.revision < deps.mirror.revision()) {
      this.forward(call, callback);
      return;
    }
    // A read of a past revision was routed by the store as it was then, and may have waited on etcd
    // (whether etcd compacted it) while the store was replaced by a list: the log must still hold
    // that revision, or the answer would be today's keys under it.
    if (decoded.revision !== 0 && !isRetained(deps.store, decoded.revision)) {
      if (!deps.liveness.isLost()) this.forward(call, callback);
      else this.refuse(callback, new ProxyError(decoded.revision > meta.revision ? 'futureRevision' : 'compacted'), started);
      return;
    }
    const request = decoded.request;
    const header = (): Buffer => encodeHeaderField(mirrorHeaderBytes(meta));
    // A kept answer holds at M only if the cache was told of every change up to M: in a worker, the
    // snapshot read may be ahead of the commits the primary has told it of yet, and the keys are read afresh.
    let response = meta.revision <= deps.mirror.revision() ? cache.get(kind, decoded.id, meta.revision, header) : undefined;
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
    // The mirror is current, but with what a stale tier holds: not fresh either (one field read, no call).
    if (stale || deps.tierStale.isStale()) {
      markStale(call);
      deps.metrics.staleReads.inc();
    }
    deps.auth.noteServed();
    observeCall(this.ctx, this.rpc, status.OK, started, 'mirror');
    callback(null, response);
  }

  private refuse(callback: UnaryCallback, error: ProxyError, started: number): void {
    observeCall(this.ctx, this.rpc, error.code, started, 'proxy');
    callback(toStatus(error));
  }
}
