// Unit: the LMDB mirror store (temporary directories, no network).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { encodeEvent, type EncodedEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue, type EncodedKeyValue } from '../../src/etcd/kv-bytes';
import type { HeaderIdentity } from '../../src/etcd/records';
import { openStore, type MirrorStore } from '../../src/store/store';

const identity: HeaderIdentity = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', raft_term: '2' };

function kv(key: string, value: string, mod: number, create = mod, version = 1): EncodedKeyValue {
  return encodeKeyValue({ key: Buffer.from(key), value: Buffer.from(value), create_revision: create, mod_revision: mod, version, lease: '0' });
}
const put = (record: EncodedKeyValue, prev?: EncodedKeyValue): EncodedEvent => encodeEvent('PUT', record, prev);
const del = (key: string, revision: number, prev: EncodedKeyValue): EncodedEvent =>
  encodeEvent('DELETE', encodeKeyValue({ key: Buffer.from(key), value: Buffer.alloc(0), create_revision: 0, mod_revision: revision, version: 0, lease: '0' }), prev);
const keys = (store: MirrorStore): string[] => [...store.scan(Buffer.from([0]), null)].map((r) => r.key.toString());

describe('MirrorStore', () => {
  let dir: string;
  let store: MirrorStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-store-'));
    store = openStore(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts empty and never synced', () => {
    assert.equal(store.meta().revision, 0);
    assert.equal(store.meta().identity, null);
    assert.deepEqual(keys(store), []);
  });

  it('applies a watch response in one step: keys, log and revision', () => {
    const a1 = kv('a', '1', 2);
    const b1 = kv('b', '1', 3);
    assert.equal(store.applyEvents([put(a1), put(b1)], identity), 3);
    const a2 = kv('a', '2', 4, 2, 2);
    assert.equal(store.applyEvents([put(a2, a1), del('b', 5, b1)], identity), 5);
    assert.deepEqual(keys(store), ['a']);
    assert.deepEqual(store.get(Buffer.from('a'))?.bytes, a2.bytes);
    assert.equal(store.get(Buffer.from('b')), undefined);
    assert.deepEqual(store.meta().identity, identity);
    const log = [...store.eventsAfter(2)];
    assert.deepEqual(log.map((l) => [l.revision, l.events.map((e) => `${e.type} ${e.kv.key.toString()}`)]), [
      [3, ['PUT b']],
      [4, ['PUT a']],
      [5, ['DELETE b']],
    ]);
    assert.deepEqual(log[2]?.events[0]?.prev_kv?.bytes, b1.bytes);
    // Each stored event keeps its prev_kv last: a watcher without prev_kv is sent a prefix of the bytes.
    assert.deepEqual(log[2]?.events[0]?.withoutPrevKv(), del('b', 5, b1).withoutPrevKv());
    assert.deepEqual(log[1]?.events[0]?.bytes, put(a2, a1).bytes);
    assert.equal(store.meta().logStart, 2);
  });

  it('ignores events at or below the mirror revision (a resumed watch repeating the seam)', () => {
    store.applyEvents([put(kv('a', '1', 2))], identity);
    assert.equal(store.applyEvents([put(kv('a', 'stale', 2)), put(kv('c', '1', 3))], identity), 3);
    assert.equal(store.get(Buffer.from('a'))?.value.toString(), '1');
    assert.deepEqual([...store.eventsAfter(0)].map((l) => l.revision), [2, 3]);
  });

  it('keeps everything committed across a reopen', async () => {
    store.applyEvents([put(kv('a', '1', 2)), put(kv('z', '9', 3))], identity);
    await store.close();
    store = openStore(dir);
    assert.equal(store.meta().revision, 3);
    assert.deepEqual(keys(store), ['a', 'z']);
  });

  it('swaps in a re-listed snapshot in one commit and restarts the log', () => {
    store.applyEvents([put(kv('old', '1', 2))], identity);
    const writer = store.beginSnapshot();
    writer.putPage([kv('n1', 'x', 7)]);
    assert.deepEqual(keys(store), ['old'], 'a snapshot is invisible until committed');
    writer.putPage([kv('n2', 'y', 8)]);
    writer.commit(10, identity, 6, 'all');
    assert.deepEqual(keys(store), ['n1', 'n2']);
    assert.equal(store.meta().revision, 10);
    assert.equal(store.meta().compactRevision, 6);
    assert.deepEqual([...store.eventsAfter(0)], []);
    // a second re-list reuses the other table, starting from empty
    const again = store.beginSnapshot();
    again.putPage([kv('only', 'z', 11)]);
    again.commit(11, identity, 6, 'all');
    assert.deepEqual(keys(store), ['only']);
  });

  it('prunes the log below a revision without touching keys', async () => {
    for (let revision = 2; revision <= 10; revision += 1) store.applyEvents([put(kv(`k${revision}`, 'v', revision))], identity);
    await store.pruneLog(8);
    assert.deepEqual([...store.eventsAfter(0)].map((l) => l.revision), [8, 9, 10]);
    assert.equal(store.meta().logStart, 8);
    assert.equal(keys(store).length, 9);
  });

  it('reports its size', () => {
    for (let revision = 2; revision <= 4; revision += 1) store.applyEvents([put(kv(`k${revision}`, 'v', revision))], identity);
    const stats = store.stats();
    assert.equal(stats.keys, 3);
    assert.equal(stats.logRevisions, 3);
    assert.ok(stats.bytes > 0);
  });

  it('wipes everything for another cluster', () => {
    store.applyEvents([put(kv('a', '1', 2))], identity);
    store.wipe();
    assert.equal(store.meta().revision, 0);
    assert.equal(store.meta().identity, null);
    assert.deepEqual(keys(store), []);
  });
});
