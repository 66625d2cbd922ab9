import { EncodedKeyValue } from './kv-bytes';
import { etcdMethod } from './proto';
import type { HeaderIdentity } from './records';
import { WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireReader, bytesFieldSize, encodeBigVarint, splitRepeatedField, tag, varintSize, writeBytesField, writeVarint } from './protowire';
import type { WireRangeResponse } from './wire';

/** Field numbers of the messages assembled here (etcdserverpb). */
const HEADER = 1;
const HEADER_REVISION = 3;
const RANGE_KVS = 2;
const RANGE_MORE = 3;
const RANGE_COUNT = 4;
const TXN_SUCCEEDED = 2;
const TXN_RESPONSES = 3;
const OP_RESPONSE_RANGE = 1;
const OP_RESPONSE_TXN = 4;

/** A header's identity fields, encoded once per identity (a mirror keeps one for a long time). */
const encodedIdentities = new WeakMap<HeaderIdentity, { beforeRevision: Buffer; afterRevision: Buffer }>();

function uint64Field(field: number, decimal: string): Buffer {
  const value = BigInt(decimal);
  return value === 0n ? Buffer.alloc(0) : Buffer.concat([Buffer.from([tag(field, WIRE_VARINT)]), encodeBigVarint(value)]);
}

function identityFields(identity: HeaderIdentity | null): { beforeRevision: Buffer; afterRevision: Buffer } {
  if (identity === null) return { beforeRevision: Buffer.alloc(0), afterRevision: Buffer.alloc(0) };
  let encoded = encodedIdentities.get(identity);
  if (encoded === undefined) {
    encoded = {
      beforeRevision: Buffer.concat([uint64Field(1, identity.cluster_id), uint64Field(2, identity.member_id)]),
      afterRevision: uint64Field(4, identity.raft_term),
    };
    encodedIdentities.set(identity, encoded);
  }
  return encoded;
}

/**
 * An encoded etcdserverpb.ResponseHeader (cluster_id, member_id, revision,
 * raft_term in field order, zero values left out, as etcd writes it).
 */
export function encodeResponseHeader(identity: HeaderIdentity | null, revision: number): Buffer {
  const { beforeRevision, afterRevision } = identityFields(identity);
  const revisionSize = revision === 0 ? 0 : 1 + varintSize(revision);
  const bytes = Buffer.allocUnsafe(beforeRevision.length + revisionSize + afterRevision.length);
  beforeRevision.copy(bytes, 0);
  let at = beforeRevision.length;
  if (revision !== 0) {
    bytes[at] = tag(HEADER_REVISION, WIRE_VARINT);
    at = writeVarint(bytes, at + 1, revision);
  }
  afterRevision.copy(bytes, at);
  return bytes;
}

/**
 * An encoded RangeResponse made of stored keys: the header, each key's bytes
 * as they are (keys_only: without their value field, which etcd's keys_only
 * answers do not have), then more and count when set. One allocation and
 * one copy per key; nothing is decoded. Without a header (null), the rest of
 * the answer, to which a header field may be prepended later
 * (encodeHeaderField): concatenated protobuf encodings merge.
 */
export function encodeRangeResponse(header: Buffer | null, kvs: readonly EncodedKeyValue[], more: boolean, count: number, keysOnly: boolean): Buffer {
  const items = keysOnly ? kvs.map((kv) => kv.withoutValue()) : kvs.map((kv) => kv.bytes);
  let size = header === null ? 0 : bytesFieldSize(header.length);
  for (const item of items) size += bytesFieldSize(item.length);
  if (more) size += 2;
  if (count > 0) size += 1 + varintSize(count);
  const bytes = Buffer.allocUnsafe(size);
  let at = header === null ? 0 : writeBytesField(bytes, 0, HEADER, header);
  for (const item of items) at = writeBytesField(bytes, at, RANGE_KVS, item);
  if (more) {
    bytes[at] = tag(RANGE_MORE, WIRE_VARINT);
    bytes[at + 1] = 1;
    at += 2;
  }
  if (count > 0) {
    bytes[at] = tag(RANGE_COUNT, WIRE_VARINT);
    writeVarint(bytes, at + 1, count);
  }
  return bytes;
}

/** A response's header field (field 1 in every etcd response) holding an encoded ResponseHeader. */
export function encodeHeaderField(header: Buffer): Buffer {
  const bytes = Buffer.allocUnsafe(bytesFieldSize(header.length));
  writeBytesField(bytes, 0, HEADER, header);
  return bytes;
}

/** One answered op of a read-only Txn, already encoded: a RangeResponse, or a nested TxnResponse. */
export type EncodedResponseOp = { readonly range: Buffer } | { readonly txn: Buffer };

/** An encoded TxnResponse: header, succeeded when true, then each op's ResponseOp (oneof response_range / response_txn). */
export function encodeTxnResponse(header: Buffer, succeeded: boolean, responses: readonly EncodedResponseOp[]): Buffer {
  const ops = responses.map((op) => ('range' in op ? { field: OP_RESPONSE_RANGE, bytes: op.range } : { field: OP_RESPONSE_TXN, bytes: op.txn }));
  let size = bytesFieldSize(header.length) + (succeeded ? 2 : 0);
  for (const op of ops) size += bytesFieldSize(bytesFieldSize(op.bytes.length));
  const bytes = Buffer.allocUnsafe(size);
  let at = writeBytesField(bytes, 0, HEADER, header);
  if (succeeded) {
    bytes[at] = tag(TXN_SUCCEEDED, WIRE_VARINT);
    bytes[at + 1] = 1;
    at += 2;
  }
  for (const op of ops) {
    bytes[at] = tag(TXN_RESPONSES, WIRE_LENGTH_DELIMITED);
    at = writeVarint(bytes, at + 1, bytesFieldSize(op.bytes.length));
    at = writeBytesField(bytes, at, op.field, op.bytes);
  }
  return bytes;
}

const rangeMethod = etcdMethod('etcdserverpb.KV', 'Range');

/**
 * An upstream RangeResponse read without re-encoding its keys: each of `kvs`
 * is the KeyValue etcd sent, checked and kept as bytes; header, more and
 * count are decoded from what is left.
 */
export function readRangeResponse(bytes: Buffer): { response: WireRangeResponse; kvs: EncodedKeyValue[] } {
  const { items, rest } = splitRepeatedField(bytes, RANGE_KVS);
  return { response: rangeMethod.responseDeserialize(rest) as WireRangeResponse, kvs: items.map((item) => EncodedKeyValue.checked(item)) };
}

/**
 * The header's revision of any etcd response (every one has its header in
 * field 1), read from the bytes without decoding the rest: 0 when absent.
 */
export function readHeaderRevision(bytes: Buffer): number {
  const reader = new WireReader(bytes);
  let revision = 0;
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    if (field !== HEADER || wireType !== WIRE_LENGTH_DELIMITED) {
      reader.skip(wireType);
      continue;
    }
    const { start, end } = reader.lengthDelimited();
    const header = new WireReader(bytes, start, end);
    while (!header.done()) {
      const inner = header.tag();
      if (inner.field === HEADER_REVISION && inner.wireType === WIRE_VARINT) revision = header.varint();
      else header.skip(inner.wireType);
    }
  }
  return revision;
}
