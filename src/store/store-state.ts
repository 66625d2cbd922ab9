import type { Database } from 'lmdb';
import type { PersistedMeta } from './meta';
import type { StoreTables } from './store-tables';

/** One open store: its tables and the meta this handle goes by. */
export interface StoreState {
  readonly tables: StoreTables;
  /**
   * The meta of the last commit this handle made or read (refresh); replaced,
   * never changed in place, by the write that changes it, so a reader holding
   * the old object keeps a consistent one.
   */
  meta: PersistedMeta;
}

/** The key table reads are served from. */
export function activeTable(state: StoreState): Database<Buffer, Buffer> {
  return state.tables.kv[state.meta.activeKv];
}

/** Writes the meta (inside the caller's transaction, when there is one); the caller then makes it state.meta. */
export function writeMeta(tables: StoreTables, next: PersistedMeta): void {
  tables.meta.putSync('meta', next);
}
