// Unit: a data dir written by schema 1 (keys and log entries as msgpack'd
// objects) is converted in place when opened, and the mirror it held is
// served as before (temporary LMDB directory, no network).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { open } from 'lmdb';
import pino from 'pino';
import { Writable } from 'node:stream';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import type { KeyValueFields, HeaderIdentity } from '../../src/etcd/records';
import { INLINE_KEY_BYTES, toStoreKey } from '../../src/store/key-codec';
import { SCHEMA_VERSION, openStore } from '../../src/store/store';

const identity: HeaderIdentity = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', raft_term: '4' };

function kv(key: string | Buffer, value: string, mod: number, create = mod, version = 1, lease = '0'): KeyValueFields {
  return { key: typeof key === 'string' ? Buffer.from(key) : key, value: Buffer.from(value), create_revision: create, mod_revision: mod, version, lease };
}

const longKey = Buffer.concat([Buffer.alloc(INLINE_KEY_BYTES + 10, 'l'), Buffer.from('!')]);
const a1 = kv('a', 'one', 2);
const a2 = kv('a', 'two', 3, 2, 2, '7587862072874582305');
const long = kv(longKey, 'long', 4);
const b = kv('b', 'bee', 5);
const bDeleted = kv('b', '', 6, 0, 0);
const held = [a2, long];
const log: [number, { type: 'PUT' | 'DELETE'; kv: KeyValueFields; prev_kv?: KeyValueFields }[]][] = [
  [3, [{ type: 'PUT', kv: a2, prev_kv: a1 }]],
  [4, [{ type: 'PUT', kv: long }]],
  [5, [{ type: 'PUT', kv: b }]],
  [6, [{ type: 'DELETE', kv: bDeleted, prev_kv: b }]],
];

/** Writes a data dir exactly as schema 1 did: msgpack'd meta, keys and log entries, the keys in table kv-b. */
async function writeSchema1(dataDir: string): Promise<void> {
  const path = join(dataDir, 'mirror');
  mkdirSync(path, { recursive: true });
  const root = open({ path, maxDbs: 8 });
  const meta = root.openDB({ name: 'meta', encoding: 'msgpack' });
  const members = root.openDB({ name: 'members', encoding: 'msgpack' });
  const active = root.openDB({ name: 'kv-b', keyEncoding: 'binary', encoding: 'msgpack' });
  const stale = root.openDB({ name: 'kv-a', keyEncoding: 'binary', encoding: 'msgpack' });
  const logDb = root.openDB({ name: 'log', keyEncoding: 'ordered-binary', encoding: 'msgpack' });
  root.transactionSync(() => {
    for (const record of held) active.putSync(toStoreKey(record.key), record);
    stale.putSync(Buffer.from('old'), kv('old', 'x', 1));
    for (const [revision, events] of log) logDb.putSync(revision, events);
    meta.putSync('meta', { schemaVersion: 1, identity, revision: 6, compactRevision: 1, logStart: 3, scope: 'all', activeKv: 'kv-b' });
    members.putSync('members', { source: 'endpoints', clientUrls: ['http://127.0.0.1:2379'] });
  });
  await root.close();
}

/** A logger that keeps its lines, to count them. */
function recordingLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

describe('store schema upgrade', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-schema-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('converts a schema-1 store in place and keeps serving its mirror', async () => {
    await writeSchema1(dir);
    const { log: logger, lines } = recordingLogger();
    const store = openStore(dir, { log: logger });
    try {
      assert.equal(store.meta().schemaVersion, SCHEMA_VERSION);
      assert.equal(store.meta().revision, 6);
      assert.equal(store.meta().logStart, 3);
      assert.deepEqual(store.meta().identity, identity);
      assert.deepEqual(store.members(), { source: 'endpoints', clientUrls: ['http://127.0.0.1:2379'] });
      // Every key as etcd's encoding, byte for byte what etcd would send.
      assert.deepEqual(store.get(Buffer.from('a'))?.bytes, encodeKeyValue(a2).bytes);
      assert.equal(store.get(Buffer.from('a'))?.lease, '7587862072874582305');
      assert.deepEqual(store.get(longKey)?.bytes, encodeKeyValue(long).bytes);
      assert.deepEqual([...store.scan(Buffer.from([0]), null)].map((r) => r.key), [Buffer.from('a'), longKey]);
      assert.equal(store.count(Buffer.from([0]), null), 2);
      // The log, each event with prev_kv last.
      const entries = [...store.eventsAfter(0)];
      assert.deepEqual(entries.map((e) => e.revision), [3, 4, 5, 6]);
      for (const [index, [, events]] of log.entries()) {
        const expected = events.map((e) => encodeEvent(e.type, encodeKeyValue(e.kv), e.prev_kv === undefined ? undefined : encodeKeyValue(e.prev_kv)));
        assert.deepEqual(entries[index]?.events.map((e) => e.bytes), expected.map((e) => e.bytes));
        assert.deepEqual(entries[index]?.events.map((e) => e.withoutPrevKvLength), expected.map((e) => e.withoutPrevKvLength));
      }
      assert.equal(entries[3]?.events[0]?.type, 'DELETE');
      assert.deepEqual(entries[3]?.events[0]?.prev_kv?.value, Buffer.from('bee'));
      // And it goes on: a new revision on top of the converted ones.
      store.applyEvents([encodeEvent('PUT', encodeKeyValue(kv('c', 'sea', 7)))], identity);
      assert.equal(store.meta().revision, 7);
      const converted = lines.filter((line) => line.msg === 'store converted in place to etcd encodings; the mirror is kept');
      // Besides the one line about modes: lmdb made the schema-1 files 0664 (less the umask), which an open to write tightens.
      const aboutModes = lines.filter((line) => String(line.msg).startsWith('data dir was open to other users'));
      assert.equal(lines.length - aboutModes.length, 1, 'exactly one line');
      assert.deepEqual([converted[0]?.from, converted[0]?.to, converted[0]?.keys, converted[0]?.logRevisions], [1, SCHEMA_VERSION, 2, 4]);
    } finally {
      await store.close();
    }
    // Converted once: a second open says nothing and finds the same content.
    const again = recordingLogger();
    const reopened = openStore(dir, { log: again.log });
    try {
      assert.equal(again.lines.length, 0);
      assert.equal(reopened.meta().revision, 7);
      assert.deepEqual([...reopened.scan(Buffer.from([0]), null)].map((r) => r.key.toString().slice(0, 3)), ['a', 'c', 'lll']);
      // The table schema 1 left inactive was emptied: the next re-list starts from nothing.
      const writer = reopened.beginSnapshot();
      writer.commit(8, identity, 0, 'all');
      assert.deepEqual([...reopened.scan(Buffer.from([0]), null)], []);
    } finally {
      await reopened.close();
    }
  });

  it('refuses to open a schema-1 store read-only, saying how to convert it', async () => {
    await writeSchema1(dir);
    assert.throws(() => openStore(dir, { readOnly: true }), /schema 1; start the proxy on it once/);
    const store = openStore(dir);
    await store.close();
    const readOnly = openStore(dir, { readOnly: true });
    assert.equal(readOnly.meta().revision, 6);
    await readOnly.close();
  });

  it('still refuses a schema it does not know', async () => {
    const path = join(dir, 'mirror');
    mkdirSync(path, { recursive: true });
    const root = open({ path, maxDbs: 8 });
    await root.openDB({ name: 'meta', encoding: 'msgpack' }).put('meta', { schemaVersion: 99, identity: null, revision: 0, compactRevision: 0, logStart: 0, scope: '', activeKv: 'kv-a' });
    await root.close();
    assert.throws(() => openStore(dir), /store schema 99, this version reads 2/);
  });
});
