// Unit: keys kept as etcd's KeyValue encoding, and Range/Txn answers
// assembled from them, byte for byte against protobufjs encoding the same
// content from proto/ (no network).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EncodedKeyValue, encodeKeyValue } from '../../src/etcd/kv-bytes';
import { etcdMethod } from '../../src/etcd/proto';
import { MalformedMessage, WireReader, encodeBigVarint, splitRepeatedField, varintSize, writeVarint } from '../../src/etcd/protowire';
import type { KeyValueFields, HeaderIdentity } from '../../src/etcd/records';
import { encodeRangeResponse, encodeResponseHeader, encodeTxnResponse, readRangeResponse } from '../../src/etcd/response-bytes';
import { toWireKeyValue } from '../../src/etcd/wire';

const range = etcdMethod('etcdserverpb.KV', 'Range');
const txn = etcdMethod('etcdserverpb.KV', 'Txn');
const identity: HeaderIdentity = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', raft_term: '2' };

function fields(overrides: Partial<KeyValueFields>): KeyValueFields {
  return { key: Buffer.from('k'), create_revision: 0, mod_revision: 0, version: 0, value: Buffer.alloc(0), lease: '0', ...overrides };
}

/** The header as protobufjs would be given it by code that leaves zero values out, as etcd does. */
function wireHeader(id: HeaderIdentity | null, revision: number): Record<string, string | number> {
  const header: Record<string, string | number> = {};
  if (id !== null && id.cluster_id !== '0') header.cluster_id = id.cluster_id;
  if (id !== null && id.member_id !== '0') header.member_id = id.member_id;
  if (revision !== 0) header.revision = revision;
  if (id !== null && id.raft_term !== '0') header.raft_term = id.raft_term;
  return header;
}

/** protobufjs's RangeResponse for the same content. */
function reference(kvs: readonly KeyValueFields[], more: boolean, count: number, keysOnly: boolean, revision = 42): Buffer {
  return range.responseSerialize({
    header: wireHeader(identity, revision),
    ...(kvs.length > 0 ? { kvs: kvs.map((kv) => toWireKeyValue(kv, keysOnly)) } : {}),
    ...(more ? { more: true } : {}),
    ...(count > 0 ? { count } : {}),
  });
}

function ours(kvs: readonly KeyValueFields[], more: boolean, count: number, keysOnly: boolean, revision = 42): Buffer {
  return encodeRangeResponse(encodeResponseHeader(identity, revision), kvs.map(encodeKeyValue), more, count, keysOnly);
}

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

const CASES: Record<string, KeyValueFields> = {
  typical: fields({ key: Buffer.from('/apisix/routes/1'), create_revision: 5, mod_revision: 9, version: 3, value: Buffer.from('{"uri":"/"}') }),
  'key only': fields({ key: Buffer.from('only') }),
  'a delete (key and mod_revision)': fields({ key: Buffer.from('gone'), mod_revision: 77 }),
  'empty value with a lease': fields({ create_revision: 2, mod_revision: 2, version: 1, lease: '7587862072874582305' }),
  'varint edges': fields({ create_revision: 127, mod_revision: 128, version: 16_384 }),
  'revisions past 2^32': fields({ create_revision: 2 ** 32 + 5, mod_revision: 2 ** 53 - 1, version: 2 ** 31 }),
  'lease past 2^53': fields({ mod_revision: 3, lease: '9007199254740993' }),
  'lease int64 max': fields({ mod_revision: 3, lease: '9223372036854775807' }),
  'negative lease (two complement)': fields({ mod_revision: 3, lease: '-2' }),
  'long key': fields({ key: Buffer.alloc(10 * 1024, 'k'), mod_revision: 4, value: Buffer.from('v') }),
  'big value': fields({ key: Buffer.from('big'), mod_revision: 4, value: Buffer.alloc(1024 * 1024 + 3, 7) }),
  'binary key and value': fields({ key: Buffer.from([0, 0xff, 0x80]), mod_revision: 1, value: Buffer.from([0, 0, 0]) }),
};

describe('protobuf wire primitives', () => {
  it('writes and reads varints at every size boundary', () => {
    for (const value of [0, 1, 127, 128, 255, 16_383, 16_384, 2 ** 21, 2 ** 28 - 1, 2 ** 31, 2 ** 32, 2 ** 35 + 1, 2 ** 49, 2 ** 53 - 1]) {
      const bytes = Buffer.alloc(varintSize(value));
      assert.equal(writeVarint(bytes, 0, value), bytes.length, `size of ${value}`);
      assert.deepEqual(bytes, encodeBigVarint(BigInt(value)), `same bytes as the 64-bit writer for ${value}`);
      const reader = new WireReader(bytes);
      assert.equal(reader.varint(), value);
      assert.ok(reader.done());
    }
  });

  it('refuses varints past 2^53 as numbers, reads them as 64-bit integers', () => {
    const bytes = encodeBigVarint(2n ** 53n + 1n);
    assert.throws(() => new WireReader(bytes).varint(), MalformedMessage);
    assert.equal(new WireReader(bytes).bigVarint(), 2n ** 53n + 1n);
    assert.equal(BigInt.asIntN(64, new WireReader(encodeBigVarint(-1n)).bigVarint()), -1n);
    assert.equal(encodeBigVarint(-1n).length, 10);
  });

  it('refuses truncated input instead of reading past the end', () => {
    const kv = encodeKeyValue(CASES.typical as KeyValueFields).bytes;
    for (const cut of [1, 2, 5, kv.length - 1]) {
      assert.throws(() => EncodedKeyValue.checked(kv.subarray(0, cut)), MalformedMessage, `cut at ${cut}`);
    }
    assert.throws(() => new WireReader(Buffer.from([0x80, 0x80])).varint(), MalformedMessage);
  });

  it('splits a repeated field out of a message, keeping the rest decodable', () => {
    const kvs = [CASES.typical, CASES['key only'], CASES['lease past 2^53']] as KeyValueFields[];
    const message = reference(kvs, true, 17, false);
    const { items, rest } = splitRepeatedField(message, 2);
    assert.deepEqual(items, kvs.map((kv) => encodeKeyValue(kv).bytes));
    assert.deepEqual(range.responseDeserialize(rest), { header: { ...wireHeader(identity, 42), revision: '42' }, more: true, count: '17' });
    // Other fields after the repeated one: the rest is put together from the pieces.
    const interleaved = Buffer.concat([Buffer.from([0x18, 0x01]), message]);
    assert.deepEqual(range.responseDeserialize(splitRepeatedField(interleaved, 2).rest), range.responseDeserialize(rest));
  });
});

describe('EncodedKeyValue', () => {
  for (const [name, kv] of Object.entries(CASES)) {
    it(`${name}: encodes as etcd does and reads its fields back`, () => {
      const encoded = encodeKeyValue(kv);
      assert.deepEqual(ours([kv], false, 1, false), reference([kv], false, 1, false));
      assert.deepEqual(ours([kv], false, 1, true), reference([kv], false, 1, true), 'keys_only');
      const view = EncodedKeyValue.checked(Buffer.from(encoded.bytes));
      assert.deepEqual(
        { key: view.key, create_revision: view.create_revision, mod_revision: view.mod_revision, version: view.version, value: view.value, lease: view.lease },
        { ...kv },
      );
    });
  }

  it('hands out views into its bytes, not copies', () => {
    const view = encodeKeyValue(CASES.typical as KeyValueFields);
    assert.equal(view.key.buffer, view.bytes.buffer);
    assert.equal(view.value.buffer, view.bytes.buffer);
    // The value is the last field without a lease: keys_only is a prefix.
    assert.equal(view.withoutValue().buffer, view.bytes.buffer);
  });

  it('keeps fields it does not know (a newer etcd) and reads the known ones around them', () => {
    const known = encodeKeyValue(CASES.typical as KeyValueFields).bytes;
    const extra = Buffer.concat([known, Buffer.from([0x38, 0x05, 0x42, 0x02, 0x61, 0x62])]); // field 7 varint, field 8 bytes
    const view = EncodedKeyValue.checked(extra);
    assert.equal(view.mod_revision, 9);
    assert.deepEqual(view.value, Buffer.from('{"uri":"/"}'));
    assert.deepEqual(view.withoutValue().subarray(-6), extra.subarray(-6));
  });
});

describe('encodeRangeResponse', () => {
  it('equals protobufjs for many keys, more and count, with and without values', () => {
    const next = random(7);
    const kvs: KeyValueFields[] = [];
    for (let i = 0; i < 300; i += 1) {
      const create = Math.floor(next() * 2 ** 40);
      kvs.push(
        fields({
          key: Buffer.from(`/k/${i}/${'x'.repeat(Math.floor(next() * 300))}`),
          create_revision: create,
          mod_revision: create + Math.floor(next() * 1000),
          version: Math.floor(next() * 5),
          value: Buffer.alloc(Math.floor(next() * 2000), i % 256),
          lease: next() < 0.3 ? String(BigInt(Math.floor(next() * 2 ** 31)) * 2n ** 31n + 1n) : '0',
        }),
      );
    }
    for (const keysOnly of [false, true]) {
      assert.deepEqual(ours(kvs, true, 1_000_000, keysOnly), reference(kvs, true, 1_000_000, keysOnly));
    }
  });

  it('leaves out what etcd leaves out: no keys, no more, count 0, zero header fields', () => {
    assert.deepEqual(ours([], false, 0, false), reference([], false, 0, false));
    assert.deepEqual(
      encodeRangeResponse(encodeResponseHeader({ cluster_id: '0', member_id: '5', raft_term: '0' }, 9), [], false, 0, false),
      range.responseSerialize({ header: { member_id: '5', revision: 9 } }),
    );
    assert.deepEqual(encodeRangeResponse(encodeResponseHeader(null, 0), [], false, 0, false), range.responseSerialize({ header: {} }));
  });

  it('carries big revisions in the header', () => {
    assert.deepEqual(ours([CASES.typical as KeyValueFields], false, 1, false, 2 ** 53 - 1), reference([CASES.typical as KeyValueFields], false, 1, false, 2 ** 53 - 1));
  });
});

describe('readRangeResponse', () => {
  it('keeps the keys etcd sent as bytes and decodes the rest', () => {
    const kvs = Object.values(CASES);
    const message = reference(kvs, true, 99, false);
    const { response, kvs: views } = readRangeResponse(message);
    assert.deepEqual(response, { header: { ...wireHeader(identity, 42), revision: '42' }, more: true, count: '99' });
    assert.deepEqual(views.map((v) => v.bytes), kvs.map((kv) => encodeKeyValue(kv).bytes));
    assert.deepEqual(encodeRangeResponse(encodeResponseHeader(identity, 42), views, true, 99, false), message);
  });
});

describe('encodeTxnResponse', () => {
  it('nests Range answers and Txn answers as etcd does', () => {
    const a = CASES.typical as KeyValueFields;
    const b = CASES['lease past 2^53'] as KeyValueFields;
    const inner = encodeTxnResponse(Buffer.alloc(0), false, [{ range: encodeRangeResponse(encodeResponseHeader(null, 42), [encodeKeyValue(b)], false, 1, true) }]);
    const ours = encodeTxnResponse(encodeResponseHeader(identity, 42), true, [
      { range: encodeRangeResponse(encodeResponseHeader(null, 42), [encodeKeyValue(a)], true, 3, false) },
      { range: encodeRangeResponse(encodeResponseHeader(null, 42), [], false, 0, false) },
      { txn: inner },
    ]);
    const theirs = txn.responseSerialize({
      header: wireHeader(identity, 42),
      succeeded: true,
      responses: [
        { response_range: { header: { revision: 42 }, kvs: [toWireKeyValue(a)], more: true, count: 3 } },
        { response_range: { header: { revision: 42 } } },
        { response_txn: { header: {}, responses: [{ response_range: { header: { revision: 42 }, kvs: [toWireKeyValue(b, true)], count: 1 } }] } },
      ],
    });
    assert.deepEqual(ours, theirs);
    assert.deepEqual(encodeTxnResponse(encodeResponseHeader(identity, 42), false, []), txn.responseSerialize({ header: wireHeader(identity, 42) }));
  });
});
