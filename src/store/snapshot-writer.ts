import type { EncodedKeyValue } from '../etcd/kv-bytes';
import type { HeaderIdentity } from '../etcd/records';
import { toStoreKey } from './key-codec';
import { otherSlot, type PersistedMeta } from './meta';
import { writeMeta, type StoreState } from './store-state';
import { applyWithheld } from './withheld-table';
import type { WriteGuard } from './write-hold';

/** Fills the inactive key table page by page; nothing is visible until commit. */
export interface SnapshotWriter {
  putPage(records: readonly EncodedKeyValue[]): void;
  /** Versions the list found that this machine withholds (grayscale/); they replace the old ones at commit. */
  putWithheld(records: readonly EncodedKeyValue[]): void;
  /** Makes the snapshot the mirror's content at `revision`, in one transaction. */
  commit(revision: number, identity: HeaderIdentity, compactRevision: number, scope: string): void;
}

/** Starts a re-list into the key table not read now; commit swaps the two. */
export function beginSnapshot(state: StoreState, guard: WriteGuard): SnapshotWriter {
  const { tables } = state;
  const slot = otherSlot(state.meta.activeKv);
  const target = tables.kv[slot];
  guard.run(() => target.clearSync());
  const withheld: EncodedKeyValue[] = [];
  return {
    putPage(records) {
      guard.run(
        () =>
          tables.root.transactionSync(() => {
            for (const record of records) target.putSync(toStoreKey(record.key), record.bytes);
          }),
        2 * records.reduce((sum, record) => sum + record.key.length + record.bytes.length, 0),
      );
    },
    putWithheld(records) {
      withheld.push(...records);
    },
    commit(revision, identity, compactRevision, scope) {
      // The log, empty from here, holds every event after `revision`: the keyspace at `revision` itself stays answerable.
      const next: PersistedMeta = { ...state.meta, activeKv: slot, identity, revision, compactRevision, logStart: revision + 1, scope };
      guard.run(
        () =>
          tables.root.transactionSync(() => {
            tables.log.clearSync();
            tables.withheld?.clearSync();
            applyWithheld(tables.withheld, withheld.map((record) => ({ key: record.key, record })));
            writeMeta(tables, next);
          }),
        2 * withheld.reduce((sum, record) => sum + record.bytes.length, 0),
      );
      state.meta = next;
      // The old table is dead weight now; emptying it can wait for the next snapshot.
    },
  };
}
