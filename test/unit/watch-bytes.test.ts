// Unit: events kept as etcd's Event encoding, and watch responses assembled
// from them, byte for byte against protobufjs encoding the same content
// from proto/ (no network).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EncodedEvent, encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { etcdMethod } from '../../src/etcd/proto';
import { MalformedMessage } from '../../src/etcd/protowire';
import type { KeyValueFields, HeaderIdentity } from '../../src/etcd/records';
import { encodeResponseHeader } from '../../src/etcd/response-bytes';
import { encodeWatchEvents, encodeWatchResponseHead, readWatchResponse, watchEventSize } from '../../src/etcd/watch-bytes';
import { toWireKeyValue } from '../../src/etcd/wire';

const watch = etcdMethod('etcdserverpb.Watch', 'Watch');
const identity: HeaderIdentity = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', raft_term: '7' };
const header = { cluster_id: identity.cluster_id, member_id: identity.member_id, revision: 12, raft_term: identity.raft_term };

function kv(key: string, value: string, mod: number, create = mod, version = 1, lease = '0'): KeyValueFields {
  return { key: Buffer.from(key), value: Buffer.from(value), create_revision: create, mod_revision: mod, version, lease };
}

const first = kv('/a', 'one', 5);
const second = kv('/a', 'two', 9, 5, 2, '9223372036854775807');
const deleted: KeyValueFields = { key: Buffer.from('/a'), value: Buffer.alloc(0), create_revision: 0, mod_revision: 12, version: 0, lease: '0' };

/** Events with their protobufjs form: PUT (a create), PUT over a previous value, DELETE with the value it removed. */
const EVENTS: { event: EncodedEvent; wire: object; wireWithPrev: object }[] = [
  { event: encodeEvent('PUT', encodeKeyValue(first)), wire: { kv: toWireKeyValue(first) }, wireWithPrev: { kv: toWireKeyValue(first) } },
  {
    event: encodeEvent('PUT', encodeKeyValue(second), encodeKeyValue(first)),
    wire: { kv: toWireKeyValue(second) },
    wireWithPrev: { kv: toWireKeyValue(second), prev_kv: toWireKeyValue(first) },
  },
  {
    event: encodeEvent('DELETE', encodeKeyValue(deleted), encodeKeyValue(second)),
    wire: { type: 'DELETE', kv: toWireKeyValue(deleted) },
    wireWithPrev: { type: 'DELETE', kv: toWireKeyValue(deleted), prev_kv: toWireKeyValue(second) },
  },
];

describe('EncodedEvent', () => {
  it('reads type, kv and prev_kv back from its bytes', () => {
    const [create, update, remove] = EVENTS.map((e) => e.event);
    assert.equal(create?.type, 'PUT');
    assert.equal(create?.prev_kv, undefined);
    assert.equal(create?.withoutPrevKv().length, create?.bytes.length);
    assert.equal(update?.kv.lease, '9223372036854775807');
    assert.deepEqual(update?.prev_kv?.value, Buffer.from('one'));
    assert.equal(remove?.type, 'DELETE');
    assert.equal(remove?.kv.mod_revision, 12);
    assert.equal(remove?.kv.create_revision, 0);
    assert.equal(remove?.prev_kv?.version, 2);
  });

  it('is read from etcd\'s bytes as they are, prev_kv last, the event without it a prefix', () => {
    for (const { event, wireWithPrev } of EVENTS) {
      const fromEtcd = watch.responseSerialize({ events: [wireWithPrev] });
      const { events } = readWatchResponse(fromEtcd);
      assert.equal(events.length, 1);
      assert.deepEqual(events[0]?.bytes, event.bytes);
      assert.equal(events[0]?.withoutPrevKvLength, event.withoutPrevKvLength);
      assert.equal(events[0]?.withoutPrevKv().buffer, fromEtcd.buffer, 'a view into the response, not a copy');
    }
  });

  it('moves prev_kv last when an event comes with a field after it', () => {
    const event = EVENTS[1]?.event as EncodedEvent;
    const unknown = Buffer.from([0x20, 0x01]); // field 4, varint: something a newer etcd might add
    const odd = Buffer.concat([event.withoutPrevKv(), event.bytes.subarray(event.withoutPrevKvLength), unknown]);
    const read = EncodedEvent.fromWire(odd);
    assert.deepEqual(read.withoutPrevKv(), Buffer.concat([event.withoutPrevKv(), unknown]));
    assert.deepEqual(read.prev_kv?.bytes, event.prev_kv?.bytes);
    assert.equal(read.kv.mod_revision, 9);
  });

  it('refuses what is not an event', () => {
    assert.throws(() => EncodedEvent.fromWire(Buffer.from([0x08, 0x05])), MalformedMessage, 'unknown type');
    assert.throws(() => EncodedEvent.fromWire(Buffer.from([0x12, 0x05, 0x0a])), MalformedMessage, 'truncated kv');
    assert.throws(() => EncodedEvent.fromWire(Buffer.from([0x12, 0x02, 0x18, 0x80])), MalformedMessage, 'truncated revision in kv');
  });
});

describe('watch responses from stored events', () => {
  const events = EVENTS.map((e) => e.event);
  for (const prevKv of [false, true]) {
    it(`equal protobufjs's encoding (prev_kv ${prevKv})`, () => {
      const wire = EVENTS.map((e) => (prevKv ? e.wireWithPrev : e.wire));
      for (const [watchId, fragment] of [[0, false], [1, false], [300, true], [-7, false]] as const) {
        const ours = Buffer.concat([encodeWatchResponseHead(encodeResponseHeader(identity, 12), watchId, fragment), encodeWatchEvents(events, prevKv)]);
        const theirs = watch.responseSerialize({ header, ...(watchId !== 0 ? { watch_id: String(watchId) } : {}), ...(fragment ? { fragment: true } : {}), events: wire });
        assert.deepEqual(ours, theirs, `watch_id ${watchId}, fragment ${fragment}`);
      }
      // What fragmenting counts per event is what the event adds to a response.
      for (const [index, event] of events.entries()) {
        assert.equal(watchEventSize(event, prevKv), watch.responseSerialize({ events: [wire[index]] }).length);
      }
    });
  }

  it('reads the other fields of an upstream response', () => {
    const message = watch.responseSerialize({ header, watch_id: '3', events: EVENTS.map((e) => e.wireWithPrev) });
    const { response, events: read } = readWatchResponse(message);
    assert.deepEqual(response, { header: { ...header, revision: '12' }, watch_id: '3' });
    assert.deepEqual(read.map((e) => e.bytes), events.map((e) => e.bytes));
    const canceled = readWatchResponse(watch.responseSerialize({ header, canceled: true, compact_revision: '40', cancel_reason: 'x' }));
    assert.deepEqual(canceled.events, []);
    assert.equal(canceled.response.compact_revision, '40');
  });
});

describe('readWatchResponse: the fields besides events, read without protobufjs', () => {
  /** A reproducible sequence, so a failure names a case that can be run again. */
  function seeded(seed: number): () => number {
    let state = seed;
    return () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
  }
  const random = seeded(29);
  const pick = <T>(choices: readonly T[]): T => choices[Math.floor(random() * choices.length)] as T;
  const INT64S = ['1', '7', '-1', '-9223372036854775808', '9223372036854775807', '4294967296', '123456789012'];
  const UINT64S = ['1', '18446744073709551615', '14841639068965178418', '4294967297', '99'];

  it('gives what proto-loader gives, for 500 responses of every shape etcd sends and some it does not', () => {
    for (let i = 0; i < 500; i += 1) {
      const response: Record<string, unknown> = {};
      if (random() < 0.9) {
        const head: Record<string, string> = {};
        if (random() < 0.8) head.cluster_id = pick(UINT64S);
        if (random() < 0.8) head.member_id = pick(UINT64S);
        if (random() < 0.8) head.revision = pick(INT64S);
        if (random() < 0.8) head.raft_term = pick(UINT64S);
        response.header = head;
      }
      if (random() < 0.5) response.watch_id = pick(INT64S);
      if (random() < 0.3) response.created = true;
      if (random() < 0.2) response.canceled = true;
      if (random() < 0.2) response.compact_revision = pick(INT64S);
      if (random() < 0.2) response.cancel_reason = pick(['etcdserver: mvcc: required revision has been compacted', 'permission denied', 'ünïcode ✓']);
      if (random() < 0.2) response.fragment = true;
      const events = EVENTS.slice(0, Math.floor(random() * 4)).map((e) => e.wireWithPrev);
      const bytes = watch.responseSerialize({ ...response, events });
      const read = readWatchResponse(bytes);
      const rest = watch.responseSerialize(response);
      assert.deepEqual(read.response, watch.responseDeserialize(rest), `case ${i}: ${JSON.stringify(response)}`);
      assert.equal(read.events.length, events.length, `case ${i}`);
    }
  });

  it('skips fields it does not know and keeps the last of a field given twice, as protobufjs does', () => {
    const unknownAndRepeated = Buffer.concat([
      watch.responseSerialize({ watch_id: '5', header: { revision: '3' } }),
      Buffer.from([0x60, 0x01]), // field 12, varint: unknown
      Buffer.from([0x7a, 0x02, 0x68, 0x69]), // field 15, bytes: unknown
      watch.responseSerialize({ watch_id: '6', header: { member_id: '2' } }),
    ]);
    assert.deepEqual(readWatchResponse(unknownAndRepeated).response, { watch_id: '6', header: { member_id: '2' } });
    assert.deepEqual(readWatchResponse(unknownAndRepeated).response, watch.responseDeserialize(unknownAndRepeated));
  });

  it('refuses a known field sent with another wire type, and a truncated header', () => {
    assert.throws(() => readWatchResponse(Buffer.from([0x10, 0x01, 0x0a, 0x05, 0x18])), MalformedMessage); // header runs past the end
    assert.throws(() => readWatchResponse(Buffer.from([0x12, 0x01, 0x00])), MalformedMessage); // watch_id as bytes
    assert.throws(() => readWatchResponse(Buffer.from([0x0a, 0x02, 0x1a, 0x00])), MalformedMessage); // header.revision as bytes
  });
});
