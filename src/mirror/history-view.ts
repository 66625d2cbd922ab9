import type { EncodedKeyValue } from '../etcd/kv-bytes';
import type { MirrorStore } from '../store/store';
import type { KeyReader } from './range-query';

/** True when the log still holds every event after `revision`, so the keyspace at `revision` can be rebuilt. */
export function isRetained(store: MirrorStore, revision: number): boolean {
  const { logStart, revision: current, compactRevision } = store.meta();
  if (revision < compactRevision || revision > current) return false;
  return revision === current || (logStart > 0 && revision >= logStart - 1);
}

/**
 * The keys of [start, end) (end null: no bound; equal to start's single key
 * when `single`) as they were at `revision`: today's records, with every
 * logged event after `revision` undone, newest first. A Put is undone to its
 * previous value (or to nothing when it created the key), a Delete to the
 * value it removed.
 */
export function keyspaceAt(store: MirrorStore, revision: number, start: Buffer, end: Buffer | null, single: boolean): KeyReader {
  const inRange = (key: Buffer): boolean =>
    single ? key.equals(start) : Buffer.compare(key, start) >= 0 && (end === null || Buffer.compare(key, end) < 0);
  const state = new Map<string, EncodedKeyValue>();
  const current = single ? [store.get(start)].filter((r): r is EncodedKeyValue => r !== undefined) : store.scan(start, end);
  for (const record of current) state.set(record.key.toString('latin1'), record);
  const later = [...store.eventsAfter(revision)].reverse();
  for (const { events } of later) {
    for (const event of [...events].reverse()) {
      if (!inRange(event.kv.key)) continue;
      const id = event.kv.key.toString('latin1');
      if (event.prev_kv !== undefined) state.set(id, event.prev_kv);
      else state.delete(id);
    }
  }
  const sorted = [...state.values()].sort((a, b) => Buffer.compare(a.key, b.key));
  return {
    get: (key) => state.get(key.toString('latin1')),
    scan: (from, to) => sorted.filter((r) => Buffer.compare(r.key, from) >= 0 && (to === null || Buffer.compare(r.key, to) < 0))[Symbol.iterator](),
  };
}
