import type { Database } from 'lmdb';
import { EncodedKeyValue } from '../etcd/kv-bytes';
import { isLongStoreKey, isPastEnd, scanStart, toStoreKey } from './key-codec';
import { orderedScan } from './ordered-scan';

/** LMDB's entries with their values as views (lmdb hands out copies of binary values, which the views may keep). */
export function recordViews(entries: Iterable<{ key: Buffer; value: Buffer }>): Iterable<{ key: Buffer; value: EncodedKeyValue }> {
  return {
    *[Symbol.iterator]() {
      for (const { key, value } of entries) yield { key, value: new EncodedKeyValue(value) };
    },
  };
}

/** A key's record in a table of records by store key (none when the table does not exist in this store). */
export function getRecord(table: Database<Buffer, Buffer> | undefined, key: Buffer): EncodedKeyValue | undefined {
  const bytes = table?.get(toStoreKey(key));
  const record = bytes === undefined ? undefined : new EncodedKeyValue(bytes);
  // A long key's store key is its first bytes and a digest: the record it holds says whether it is this key.
  return record !== undefined && record.key.equals(key) ? record : undefined;
}

/** Records with start <= key < end (end null: no bound), in etcd's byte order. */
export function scanRecords(table: Database<Buffer, Buffer>, start: Buffer, end: Buffer | null): IterableIterator<EncodedKeyValue> {
  return orderedScan(recordViews(table.getRange({ start: scanStart(start) })), start, end);
}

/** How many keys scanRecords would yield, reading keys only where it can. */
export function countRecords(table: Database<Buffer, Buffer>, start: Buffer, end: Buffer | null): number {
  let total = 0;
  for (const storeKey of table.getKeys({ start: scanStart(start) })) {
    if (end !== null && isPastEnd(storeKey, end)) break;
    // An inline key is its own full key; a long one must be read to be placed exactly.
    const stored = isLongStoreKey(storeKey) ? table.get(storeKey) : undefined;
    const key = stored === undefined ? storeKey : new EncodedKeyValue(stored).key;
    if (Buffer.compare(key, start) >= 0 && (end === null || Buffer.compare(key, end) < 0)) total += 1;
  }
  return total;
}
