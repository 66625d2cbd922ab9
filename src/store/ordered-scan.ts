import { isLongStoreKey, isPastEnd, sortablePrefix } from './key-codec';

/** A stored record that carries its full etcd key. */
export interface KeyedRecord {
  readonly key: Buffer;
}

export interface StoredEntry<V extends KeyedRecord> {
  readonly key: Buffer;
  readonly value: V;
}

/**
 * Yields the records with start <= key < end (end null: no upper bound) in
 * etcd's byte order, from stored entries in LMDB order that begin at or before
 * the first candidate (see scanStart). LMDB order is etcd's order except among
 * long keys sharing their sortable prefix, which arrive grouped and are
 * sorted here by full key.
 */
export function* orderedScan<V extends KeyedRecord>(
  entries: Iterable<StoredEntry<V>>,
  start: Buffer,
  end: Buffer | null,
): Generator<V> {
  let run: V[] = [];
  let runPrefix: Buffer | null = null;
  const flush = function* (): Generator<V> {
    if (run.length > 1) run.sort((a, b) => Buffer.compare(a.key, b.key));
    for (const record of run) yield record;
    run = [];
    runPrefix = null;
  };
  const inRange = (key: Buffer): boolean => Buffer.compare(key, start) >= 0 && (end === null || Buffer.compare(key, end) < 0);

  for (const entry of entries) {
    if (end !== null && isPastEnd(entry.key, end)) break;
    if (isLongStoreKey(entry.key)) {
      const prefix = sortablePrefix(entry.key);
      if (runPrefix === null || !prefix.equals(runPrefix)) {
        yield* flush();
        runPrefix = prefix;
      }
      if (inRange(entry.value.key)) run.push(entry.value);
      continue;
    }
    yield* flush();
    // An inline stored key is the etcd key itself: the record need not be read to place it.
    if (inRange(entry.key)) yield entry.value;
  }
  yield* flush();
}
