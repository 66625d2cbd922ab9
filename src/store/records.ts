/**
 * What the mirror keeps, shaped like etcd's own messages (field names as in
 * mvccpb) so they go back on the wire without translation. Revisions are JS
 * numbers: exact up to 2^53, far beyond any etcd cluster's revision; lease
 * IDs stay decimal strings because they use all 64 bits.
 */
export interface KeyValueRecord {
  readonly key: Buffer;
  readonly create_revision: number;
  readonly mod_revision: number;
  readonly version: number;
  readonly value: Buffer;
  /** Decimal int64; "0" for no lease. */
  readonly lease: string;
}

export type EventType = 'PUT' | 'DELETE';

export interface EventRecord {
  readonly type: EventType;
  /** For DELETE: the key and the deleting revision (mod_revision), as etcd sends it. */
  readonly kv: KeyValueRecord;
  readonly prev_kv?: KeyValueRecord;
}

/** The upstream identity that mirror answers carry in their header. */
export interface UpstreamIdentity {
  /** Decimal uint64. */
  readonly cluster_id: string;
  readonly member_id: string;
  readonly raft_term: string;
}

export interface StoreMeta {
  readonly schemaVersion: number;
  /** The cluster whose data this is; null while the store is empty. */
  readonly identity: UpstreamIdentity | null;
  /** M: every event up to here is committed. 0 = never synced. */
  readonly revision: number;
  /** The upstream's compaction point when last known; reads below it are compacted. */
  readonly compactRevision: number;
  /** The log holds every event from this revision on, so the keyspace is known from logStart - 1 (0: no log yet). */
  readonly logStart: number;
  /** Which part of the keyspace the content covers (MirroredRanges.describe); '' while empty. */
  readonly scope: string;
}
