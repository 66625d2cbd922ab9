// Unit: keys of any length etcd accepts are stored in LMDB and ranged in
// etcd's byte order (temporary LMDB directory, no network).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { open, type Database, type RootDatabase } from 'lmdb';
import { INLINE_KEY_BYTES, scanStart, toStoreKey } from '../../src/store/key-codec';
import { orderedScan } from '../../src/store/ordered-scan';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { openStore } from '../../src/store/store';

interface Row {
  key: Buffer;
}

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

function keysUnderTest(): Buffer[] {
  const next = random(42);
  const shared = Buffer.alloc(INLINE_KEY_BYTES + 500, 'a');
  const keys: Buffer[] = [Buffer.from('a'), Buffer.from('b'), Buffer.from([0]), Buffer.from([0xff, 0xff])];
  for (const length of [INLINE_KEY_BYTES - 1, INLINE_KEY_BYTES, INLINE_KEY_BYTES + 1, 10 * 1024]) {
    keys.push(Buffer.alloc(length, 'a'), Buffer.alloc(length, 'b'));
  }
  for (let i = 0; i < 60; i += 1) {
    // 10 KiB keys sharing a prefix far longer than LMDB's key limit, differing late
    const key = Buffer.alloc(10 * 1024, 'a');
    shared.copy(key);
    for (let j = 0; j < 4; j += 1) key[shared.length + Math.floor(next() * 2000)] = 97 + Math.floor(next() * 3);
    keys.push(key.subarray(0, shared.length + Math.floor(next() * (key.length - shared.length))));
  }
  for (let i = 0; i < 60; i += 1) {
    keys.push(Buffer.from(Array.from({ length: 1 + Math.floor(next() * 6) }, () => Math.floor(next() * 4) + 97)));
  }
  const unique = new Map(keys.map((k) => [k.toString('hex'), k]));
  return [...unique.values()];
}

describe('LMDB storage of etcd keys', () => {
  let dir: string;
  let root: RootDatabase;
  let db: Database<Row, Buffer>;
  const keys = keysUnderTest();
  const sorted = [...keys].sort(Buffer.compare);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-store-'));
    root = open({ path: dir });
    db = root.openDB<Row, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'msgpack' });
    for (const key of keys) db.putSync(toStoreKey(key), { key });
  });
  after(async () => {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scan = (start: Buffer, end: Buffer | null): Buffer[] =>
    [...orderedScan(db.getRange({ start: scanStart(start) }), start, end)].map((row) => Buffer.from(row.key));
  const expected = (start: Buffer, end: Buffer | null): Buffer[] =>
    sorted.filter((k) => Buffer.compare(k, start) >= 0 && (end === null || Buffer.compare(k, end) < 0));

  it('stores keys far beyond LMDB\'s limit and gives each back whole', () => {
    assert.ok(keys.some((k) => k.length === 10 * 1024));
    for (const key of keys) assert.ok(Buffer.from(db.get(toStoreKey(key))?.key ?? []).equals(key), `${key.length}-byte key`);
  });

  it('ranges over everything in byte order', () => {
    assert.deepEqual(scan(Buffer.from([0]), null), sorted);
  });

  it('honours every start and end, long or short, in byte order', () => {
    const next = random(7);
    for (let i = 0; i < 300; i += 1) {
      const a = sorted[Math.floor(next() * sorted.length)] ?? Buffer.alloc(0);
      const b = sorted[Math.floor(next() * sorted.length)] ?? Buffer.alloc(0);
      const [start, end] = Buffer.compare(a, b) <= 0 ? [a, b] : [b, a];
      assert.deepEqual(scan(start, end), expected(start, end), `range ${start.length}B..${end.length}B`);
      assert.deepEqual(scan(start, null), expected(start, null), `from ${start.length}B`);
    }
  });

  it('counts every range exactly as the scan yields it, reading keys only', async () => {
    const dir2 = mkdtempSync(join(tmpdir(), 'ecp-store-count-'));
    const store = openStore(dir2);
    try {
      const writer = store.beginSnapshot();
      writer.putPage(keys.map((key, i) => encodeKeyValue({ key, value: Buffer.from('v'), create_revision: i + 2, mod_revision: i + 2, version: 1, lease: '0' })));
      writer.commit(keys.length + 1, { cluster_id: '1', member_id: '1', raft_term: '1' }, 0, 'all');
      const next = random(3);
      for (let i = 0; i < 200; i += 1) {
        const a = sorted[Math.floor(next() * sorted.length)] ?? Buffer.alloc(0);
        const c = sorted[Math.floor(next() * sorted.length)] ?? Buffer.alloc(0);
        const [start, end] = Buffer.compare(a, c) <= 0 ? [a, c] : [c, a];
        assert.equal(store.count(start, end), expected(start, end).length);
        assert.equal(store.count(start, null), expected(start, null).length);
      }
    } finally {
      await store.close();
      rmSync(dir2, { recursive: true, force: true });
    }
  });

  it('ranges a prefix of long keys (etcd prefix end: last byte + 1)', () => {
    const prefix = Buffer.alloc(INLINE_KEY_BYTES + 200, 'a');
    const end = Buffer.from(prefix);
    end[end.length - 1] = 98;
    const got = scan(prefix, end);
    assert.ok(got.length > 10, `only ${got.length} keys under the long prefix`);
    assert.deepEqual(got, expected(prefix, end));
  });
});
