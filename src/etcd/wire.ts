import type { KeyValueFields, HeaderIdentity } from './records';

/**
 * etcd messages as proto-loader decodes them (int64 as decimal strings, zero
 * values absent), for the paths that still decode: relayed watches, the
 * proxy's own calls, and the few answers built as objects.
 */
export interface WireHeader {
  cluster_id?: string;
  member_id?: string;
  revision?: string;
  raft_term?: string;
}
export interface WireKeyValue {
  key?: Buffer;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  value?: Buffer;
  lease?: string;
}
export interface WireEvent {
  type?: 'PUT' | 'DELETE';
  kv?: WireKeyValue;
  prev_kv?: WireKeyValue;
}
export interface WireWatchResponse {
  header?: WireHeader;
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  fragment?: boolean;
  events?: WireEvent[];
}
export interface WireRangeResponse {
  header?: WireHeader;
  kvs?: WireKeyValue[];
  more?: boolean;
  count?: string;
}

export function toRevision(value: string | undefined): number {
  if (value === undefined) return 0;
  const revision = Number(value);
  if (!Number.isSafeInteger(revision)) throw new Error(`etcd-cache-proxy: revision ${value} beyond 2^53`);
  return revision;
}

export function toIdentity(header: WireHeader | undefined): HeaderIdentity {
  return { cluster_id: header?.cluster_id ?? '0', member_id: header?.member_id ?? '0', raft_term: header?.raft_term ?? '0' };
}

/** A KeyValue ready for the encoder: revisions as numbers (the encoder parses strings slowly). */
export interface OutgoingKeyValue {
  key: Buffer;
  create_revision?: number;
  mod_revision?: number;
  version?: number;
  value?: Buffer;
  lease?: string;
}

/** A record as etcd puts it on the wire: zero values left out, as etcd's own encoder does. */
export function toWireKeyValue(record: KeyValueFields, keysOnly = false): OutgoingKeyValue {
  const wire: OutgoingKeyValue = { key: record.key };
  if (record.create_revision !== 0) wire.create_revision = record.create_revision;
  if (record.mod_revision !== 0) wire.mod_revision = record.mod_revision;
  if (record.version !== 0) wire.version = record.version;
  if (!keysOnly && record.value.length > 0) wire.value = record.value;
  if (record.lease !== '0') wire.lease = record.lease;
  return wire;
}
