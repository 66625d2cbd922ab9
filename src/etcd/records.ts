/**
 * What the mirror knows of a key, field by field, named as in mvccpb. The
 * store holds keys and events as etcd's own encodings (kv-bytes.ts,
 * event-bytes.ts); their views read as these fields. Revisions are JS
 * numbers: exact up to 2^53, far beyond any etcd cluster's revision; lease
 * IDs stay decimal strings because they use all 64 bits.
 */
export interface KeyValueFields {
  readonly key: Buffer;
  readonly create_revision: number;
  readonly mod_revision: number;
  readonly version: number;
  readonly value: Buffer;
  /** Decimal int64; "0" for no lease. */
  readonly lease: string;
}

export type EventType = 'PUT' | 'DELETE';

/** The upstream identity that mirror answers carry in their header. */
export interface HeaderIdentity {
  /** Decimal uint64. */
  readonly cluster_id: string;
  readonly member_id: string;
  readonly raft_term: string;
}

