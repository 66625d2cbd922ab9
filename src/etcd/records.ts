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
