import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { recordViews } from './key-reads';
import { EMPTY_META, type StoreMeta } from './meta';
import { orderedScan } from './ordered-scan';
import type { StoreTables } from './store-tables';

/** Everything the store holds at one moment: meta and every key, from one read transaction. */
export interface StoreView {
  readonly meta: StoreMeta;
  readonly records: IterableIterator<EncodedKeyValue>;
  /** Ends the read transaction (a long-lived one keeps LMDB from reusing pages). */
  done(): void;
}

/** A consistent view of the whole store, for snapshots: meta and keys as of one commit, whatever this handle last saw. */
export function viewStore(tables: StoreTables): StoreView {
  const transaction = tables.root.useReadTransaction();
  const seen = tables.meta.get('meta', { transaction }) ?? EMPTY_META;
  const table = tables.kv[seen.activeKv];
  const empty = Buffer.alloc(0);
  return {
    meta: seen,
    records: orderedScan(recordViews(table.getRange({ transaction })), empty, null),
    done: () => transaction.done(),
  };
}
