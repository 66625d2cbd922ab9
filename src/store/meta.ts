import type { HeaderIdentity } from '../etcd/records';

/**
 * 2: keys and log entries are etcd's encodings (KeyValue, Event) under lmdb's
 * binary encoding; 1 kept them as msgpack'd objects.
 */
export const SCHEMA_VERSION = 2;

/** What the store knows about its content as a whole. */
export interface StoreMeta {
  readonly schemaVersion: number;
  /** The cluster whose data this is; null while the store is empty. */
  readonly identity: HeaderIdentity | null;
  /** M: every event up to here is committed. 0 = never synced. */
  readonly revision: number;
  /** The upstream's compaction point when last known; reads below it are compacted. */
  readonly compactRevision: number;
  /** The log holds every event from this revision on, so the keyspace is known from logStart - 1 (0: no log yet). */
  readonly logStart: number;
  /** Which part of the keyspace the content covers (KeyRanges.describe); '' while empty. */
  readonly scope: string;
}

/** Two key tables: one serves reads while a re-list fills the other, then they swap in one commit. */
export type KvSlot = 'kv-a' | 'kv-b';

/** The meta as it is written to the meta table: also which key table is the one read. */
export interface PersistedMeta extends StoreMeta {
  readonly activeKv: KvSlot;
}

export const EMPTY_META: PersistedMeta = {
  schemaVersion: SCHEMA_VERSION,
  identity: null,
  revision: 0,
  compactRevision: 0,
  logStart: 0,
  scope: '',
  activeKv: 'kv-a',
};

/** The key table that is not read now: where a re-list (or a schema upgrade) writes. */
export function otherSlot(slot: KvSlot): KvSlot {
  return slot === 'kv-a' ? 'kv-b' : 'kv-a';
}
