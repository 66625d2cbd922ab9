import { EMPTY_META } from './meta';
import { activeTable, writeMeta, type StoreState } from './store-state';
import type { StoreTables } from './store-tables';
import type { WriteGuard } from './write-hold';

export interface StoreStats {
  readonly keys: number;
  readonly logRevisions: number;
  readonly bytes: number;
}

/** Log entries dropped in one transaction: short enough not to hold up the event loop, and each is its own commit. */
const PRUNE_BATCH = 5_000;

/**
 * Drops log entries of revisions below keepFrom, a batch per synchronous
 * transaction with a turn of the event loop between them. Not in lmdb-js's
 * asynchronous transactions: one that fails (a full disk) rejects promises
 * lmdb-js keeps to itself, which ends the process.
 */
export async function pruneLog(state: StoreState, keepFrom: number, guard: WriteGuard): Promise<void> {
  const { tables } = state;
  while (keepFrom > state.meta.logStart && guard.held === null) {
    state.meta = guard.run(() =>
      tables.root.transactionSync(() => {
        let dropped = 0;
        let last = 0;
        for (const revision of tables.log.getKeys({ end: keepFrom, limit: PRUNE_BATCH })) {
          tables.log.removeSync(revision);
          dropped += 1;
          last = revision;
        }
        // A list may have replaced the log between two batches: logStart never goes back.
        const logStart = Math.max(state.meta.logStart, dropped < PRUNE_BATCH ? keepFrom : last + 1);
        const next = { ...state.meta, logStart };
        writeMeta(tables, next);
        return next;
      }),
    );
    if (state.meta.logStart < keepFrom) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Forgets the content (another cluster, or a restored one); what etcd said of its members, auth and grayscale settings stays. */
export function wipeStore(state: StoreState, guard: WriteGuard): void {
  const { tables } = state;
  guard.run(() => tables.root.transactionSync(() => {
    tables.kv['kv-a'].clearSync();
    tables.kv['kv-b'].clearSync();
    tables.log.clearSync();
    tables.withheld?.clearSync();
    writeMeta(tables, EMPTY_META);
  }));
  state.meta = EMPTY_META;
}

/** Current keys, log entries (revisions) and bytes the environment uses. */
export function storeStats(state: StoreState): StoreStats {
  const entries = (db: { getStats(): unknown }): number => (db.getStats() as { entryCount: number }).entryCount;
  return { keys: entries(activeTable(state)), logRevisions: entries(state.tables.log), bytes: usedBytes(state.tables) };
}

/** Bytes up to the end of the last page the environment uses (its file may be longer: space-reserve.ts). */
export function usedBytes(tables: StoreTables): number {
  return (tables.lastPageNumber() + 1) * tables.pageSize;
}
