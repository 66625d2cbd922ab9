import type { HeaderIdentity } from '../etcd/records';

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
