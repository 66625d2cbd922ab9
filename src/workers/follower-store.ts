import type { StoreMeta } from '../store/meta';
import type { MirrorStore } from '../store/store';
import type { ToPrimary } from './messages';

/**
 * The store as a worker uses it: open read-only, every write the primary's.
 * The one thing a client's call teaches the store (a compaction made through
 * this worker) is sent to the primary to record, and counted here at once,
 * so the client's next read at an older revision is refused as etcd refuses
 * it, before the primary's commit arrives.
 */
export function followerStore(store: MirrorStore, send: (message: ToPrimary) => void): MirrorStore {
  let compactedHere = 0;
  const withOwn = (meta: StoreMeta): StoreMeta => (meta.compactRevision >= compactedHere ? meta : { ...meta, compactRevision: compactedHere });
  return {
    ...store,
    meta: () => withOwn(store.meta()),
    refresh: () => withOwn(store.refresh()),
    updateMeta(update) {
      if (update.identity !== undefined) throw new Error('etcd-cache-proxy: the upstream identity is recorded by the primary process');
      if (update.compactRevision === undefined) return;
      compactedHere = Math.max(compactedHere, update.compactRevision);
      send({ type: 'ecp:compacted', revision: update.compactRevision });
    },
  };
}
