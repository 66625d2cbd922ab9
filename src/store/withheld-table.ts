import type { Database } from 'lmdb';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { toStoreKey } from './key-codec';
import { recordViews } from './key-reads';
import { orderedScan } from './ordered-scan';

/** A key's newest version that this machine withholds (grayscale/), or none any more (null). */
export interface WithheldChange {
  readonly key: Buffer;
  readonly record: EncodedKeyValue | null;
}

/** Writes withheld versions and forgets those no longer withheld, inside the caller's transaction. */
export function applyWithheld(table: Database<Buffer, Buffer> | undefined, changes: readonly WithheldChange[]): void {
  if (table === undefined) throw new Error('etcd-cache-proxy: the store is open read-only');
  for (const change of changes) {
    if (change.record === null) table.removeSync(toStoreKey(change.key));
    else table.putSync(toStoreKey(change.key), change.record.bytes);
  }
}

/** Every withheld version, in key order (none in a store written before the table existed). */
export function allWithheld(table: Database<Buffer, Buffer> | undefined): IterableIterator<EncodedKeyValue> {
  return orderedScan(recordViews(table?.getRange({}) ?? []), Buffer.alloc(0), null);
}

export function withheldCount(table: Database<Buffer, Buffer> | undefined): number {
  return table === undefined ? 0 : (table.getStats() as { entryCount: number }).entryCount;
}
