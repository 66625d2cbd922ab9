import { EMPTY_META } from './meta';
import { activeTable, writeMeta, type StoreState } from './store-state';

export interface StoreStats {
  readonly keys: number;
  readonly logRevisions: number;
  readonly bytes: number;
}

/** Drops log entries of revisions below keepFrom, in a transaction of its own (lmdb's async one: it can be long). */
export async function pruneLog(state: StoreState, keepFrom: number): Promise<void> {
  if (keepFrom <= state.meta.logStart) return;
  const { tables } = state;
  await tables.root.transaction(() => {
    for (const revision of tables.log.getKeys({ end: keepFrom })) tables.log.removeSync(revision);
    const next = { ...state.meta, logStart: keepFrom };
    writeMeta(tables, next);
    state.meta = next;
  });
}

/** Forgets the content (another cluster, or a restored one); what etcd said of its members, auth and grayscale settings stays. */
export function wipeStore(state: StoreState): void {
  const { tables } = state;
  tables.root.transactionSync(() => {
    tables.kv['kv-a'].clearSync();
    tables.kv['kv-b'].clearSync();
    tables.log.clearSync();
    tables.withheld?.clearSync();
    writeMeta(tables, EMPTY_META);
  });
  state.meta = EMPTY_META;
}

/** Current keys, log entries (revisions) and bytes the environment uses. */
export function storeStats(state: StoreState): StoreStats {
  const env = state.tables.root.getStats() as { pageSize: number; lastPageNumber: number };
  const entries = (db: { getStats(): unknown }): number => (db.getStats() as { entryCount: number }).entryCount;
  return { keys: entries(activeTable(state)), logRevisions: entries(state.tables.log), bytes: (env.lastPageNumber + 1) * env.pageSize };
}
