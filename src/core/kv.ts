import { toRevision } from '../etcd/wire';
import type { CoreContext } from './context';
import { forwardUnary } from './forward';
import type { CoreService, UnaryHandler } from './call';
import { forwardingService, rpcRef } from './forwarding-service';
import { mirrorRange, mirrorTxn } from './mirror-reads';
import { serviceMethods } from '../etcd/proto';
import { acknowledgeUnchangedPut } from './unchanged-put';

const SERVICE = 'etcdserverpb.KV';
/** Writes whose answer carries the revision the mirror must reach before the client hears back. */
const READ_YOUR_WRITES = ['Put', 'DeleteRange', 'Txn'] as const;

/**
 * KV: Range from the mirror when there is one (see mirror-reads.ts), else
 * forwarded and retried on another member; writes forwarded once, refused in
 * read-only mode or while the upstream is lost, and answered only once the
 * mirror holds their revision. A Txn whose branches only read is a read (the
 * method table decides per request): when the mirror cannot answer it (keys
 * outside the mirrored prefixes, auth on) it is forwarded even in read-only
 * mode or while the upstream is lost, and meets what a forwarded Range meets.
 */
export function createKvService(ctx: CoreContext): CoreService {
  const methods = serviceMethods(SERVICE);
  const overrides: Record<string, UnaryHandler> = {};
  // A read etcd answers through this proxy names no revision below one a client already had here: the
  // highest forwarded answer, or the mirror's (a member cut off from its peers answers from what it has).
  const reads = ctx.mirrorReads;
  const notBelow = reads === null ? undefined : (): number => Math.max(reads.floor.revision, reads.store.meta().revision);
  for (const name of READ_YOUR_WRITES) {
    overrides[name] = forwardUnary(ctx, rpcRef(SERVICE, name), {
      beforeReply: (response, request) => ctx.writes.awaitMirror(name, response, request),
      notBelow,
    });
  }
  const put = methods.Put;
  if (ctx.mirrorReads !== null && put !== undefined && overrides.Put !== undefined) {
    overrides.Put = acknowledgeUnchangedPut(ctx, ctx.mirrorReads, ctx.mode, rpcRef(SERVICE, 'Put'), put, overrides.Put);
  }
  const compact = methods.Compact;
  if (ctx.mirrorReads !== null && compact !== undefined) {
    const forward = forwardUnary(ctx, rpcRef(SERVICE, 'Compact'));
    const store = ctx.mirrorReads.store;
    // A compaction through the proxy is known at once: older reads get etcd's compacted error from then on.
    overrides.Compact = (call, callback) =>
      forward(call, (error, value) => {
        if (error === null) {
          const request = compact.requestDeserialize(call.request) as { revision?: string };
          store.updateMeta({ compactRevision: toRevision(request.revision) });
        }
        callback(error, value);
      });
  }
  const range = methods.Range;
  if (ctx.mirrorReads !== null && range !== undefined) {
    const forward = forwardUnary(ctx, rpcRef(SERVICE, 'Range'), { notBelow });
    overrides.Range = mirrorRange(ctx, ctx.mirrorReads, rpcRef(SERVICE, 'Range'), range, forward);
  }
  const txn = methods.Txn;
  if (ctx.mirrorReads !== null && txn !== undefined && overrides.Txn !== undefined) {
    overrides.Txn = mirrorTxn(ctx, ctx.mirrorReads, rpcRef(SERVICE, 'Txn'), txn, overrides.Txn);
  }
  return forwardingService(ctx, SERVICE, { overrides });
}
