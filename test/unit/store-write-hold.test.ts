// Unit test (no network): the store's writes once one has found no room on the disk. The first failure for
// lack of room holds every later write back without running it (lmdb-js must not be asked again), the writes
// that can wait are kept (the latest of each kind) and made on resume, and other errors pass through as they
// are. The reserve claims room ahead of LMDB's last page and never writes below the data file's end.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RESERVE_BYTES, SpaceReserve } from '../../src/store/space-reserve';
import { isOutOfSpace, StoreFull, WriteGuard, type WriteNotice } from '../../src/store/write-hold';

const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

test('what counts as no room: ENOSPC from node or lmdb-js, LMDB map full; nothing else', () => {
  assert.ok(isOutOfSpace(enospc()));
  assert.ok(isOutOfSpace(Object.assign(new Error('No space left on device: Attempting to write page'), { code: 28 })));
  assert.ok(isOutOfSpace(Object.assign(new Error('MDB_MAP_FULL: Environment mapsize limit reached'), { code: -30792 })));
  assert.ok(!isOutOfSpace(new Error('MDB_BAD_TXN')));
  assert.ok(!isOutOfSpace('ENOSPC'));
});

test('after a write finds no room, nothing more is run until resume; kept writes are made first, then waiters are woken', async () => {
  const guard = new WriteGuard(null);
  const notices: WriteNotice[] = [];
  guard.onNotice((notice) => notices.push(notice));
  const ran: string[] = [];
  assert.throws(() => guard.run(() => { throw enospc(); }, 1234), StoreFull);
  assert.equal(guard.held?.needBytes, 1234);
  assert.throws(() => guard.run(() => ran.push('commit')), StoreFull);
  guard.runOrDefer('members', () => ran.push('members v1'));
  guard.runOrDefer('members', () => ran.push('members v2'));
  guard.runOrDefer('auth', () => ran.push('auth'));
  assert.deepEqual(ran, [], 'nothing ran while held');
  let woken = false;
  const writable = guard.whenWritable().then(() => (woken = true));
  guard.resume();
  await writable;
  assert.ok(woken);
  assert.deepEqual(ran, ['members v2', 'auth'], 'the latest of each kind, once');
  assert.equal(guard.held, null);
  assert.deepEqual(notices.map((n) => n.kind), ['failed', 'resumed']);
  assert.equal(guard.run(() => 'again'), 'again');
});

test('a kept write that finds no room again on resume holds again, and is kept again', () => {
  const guard = new WriteGuard(null);
  assert.throws(() => guard.run(() => { throw enospc(); }), StoreFull);
  let attempts = 0;
  guard.runOrDefer('meta', () => {
    attempts += 1;
    if (attempts === 1) throw enospc();
  });
  guard.resume();
  assert.equal(attempts, 1);
  assert.notEqual(guard.held, null, 'held again');
  guard.resume();
  assert.equal(attempts, 2);
  assert.equal(guard.held, null);
});

test('another error passes through as it is and holds nothing', () => {
  const guard = new WriteGuard(null);
  const notices: WriteNotice[] = [];
  guard.onNotice((notice) => notices.push(notice));
  const error = new Error('MDB_BAD_TXN');
  assert.throws(() => guard.run(() => { throw error; }), (thrown) => thrown === error);
  assert.throws(() => guard.runOrDefer('members', () => { throw error; }), (thrown) => thrown === error);
  assert.equal(guard.held, null);
  assert.deepEqual(notices.map((n) => (n.kind === 'failed' ? n.held : 'resumed')), [null, null]);
});

test('the reserve claims room ahead of the last page, in whole MiB, never below the end of the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ecp-reserve-'));
  try {
    const file = join(dir, 'data.mdb');
    const pages = Buffer.alloc(3 * 4096, 0xab);
    writeFileSync(file, pages);
    let used = pages.length;
    const reserve = new SpaceReserve(dir, () => used);
    reserve.ensure(100_000);
    const size = statSync(file).size;
    assert.ok(size >= used + RESERVE_BYTES + 100_000 && size % (1024 * 1024) === 0, `claimed ${size}`);
    assert.deepEqual(readFileSync(file).subarray(0, pages.length), pages, 'what LMDB wrote is left alone');
    // LMDB wrote past the claim (a write larger than foreseen): the claim goes on from the file's end.
    const beyond = Buffer.alloc(4096, 0xcd);
    writeFileSync(file, beyond, { flag: 'a' });
    used = size + beyond.length;
    reserve.ensure(0);
    assert.deepEqual(readFileSync(file).subarray(size, size + beyond.length), beyond);
    assert.ok(statSync(file).size >= used + RESERVE_BYTES);
    reserve.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
