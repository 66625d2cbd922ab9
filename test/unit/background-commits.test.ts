// Unit: the mirror's commits in lmdb-js's writer thread (temporary LMDB
// directories, no network): the proxy's thread goes on while a commit is made,
// reads never see a revision that is not that of the keys they read, the
// writes that can wait are made after it, any other write is refused
// meanwhile, and a commit refused for lack of room writes nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { encodeEvent, type EncodedEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import type { HeaderIdentity } from '../../src/etcd/records';
import { BackgroundCommits } from '../../src/store/background-commits';
import { EMPTY_META } from '../../src/store/meta';
import type { SpaceReserve } from '../../src/store/space-reserve';
import { openStoreTables } from '../../src/store/store-tables';
import { openStore, StoreFull, type MirrorStore } from '../../src/store/store';
import { WriteGuard } from '../../src/store/write-hold';

const identity: HeaderIdentity = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', raft_term: '2' };
const put = (key: string, value: string, revision: number): EncodedEvent =>
  encodeEvent('PUT', encodeKeyValue({ key: Buffer.from(key), value: Buffer.from(value), create_revision: 2, mod_revision: revision, version: revision - 1, lease: '0' }));
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('MirrorStore.applyEventsInBackground', () => {
  let dir: string;
  let store: MirrorStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-background-'));
    store = openStore(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('resolves with the new revision, and the keys, the log and the meta hold it', async () => {
    assert.equal(await store.applyEventsInBackground([put('a', '1', 2), put('b', '1', 3)], identity, 3), 3);
    assert.equal(store.meta().revision, 3);
    assert.equal(store.get(Buffer.from('b'))?.value.toString(), '1');
    assert.deepEqual([...store.eventsAfter(0)].map((entry) => entry.revision), [2, 3]);
    // Nothing new: no commit, the same revision.
    assert.equal(await store.applyEventsInBackground([put('a', '1', 2)], identity, 3), 3);
  });

  it('leaves the thread free while it commits, and a read sees a revision only with its keys', async () => {
    let turnsWhileCommitting = 0;
    let seenAhead = 0;
    for (let revision = 2; revision < 200; revision += 1) {
      const committed = store.applyEventsInBackground([put('k', String(revision), revision)], identity, revision);
      let done = false;
      void committed.then(() => (done = true));
      while (!done) {
        await nextTurn();
        turnsWhileCommitting += 1;
        // Whatever the read snapshot holds, the revision a read answers with is that of the keys it reads.
        const meta = store.meta();
        const value = store.get(Buffer.from('k'))?.value.toString();
        assert.equal(value, meta.revision === 0 ? undefined : String(meta.revision), `revision ${meta.revision} answered with the key at ${value}`);
        if (meta.revision === revision && !done) seenAhead += 1;
      }
      assert.equal(await committed, revision);
    }
    // A commit made on this thread would have let no turn run before it was done.
    assert.ok(turnsWhileCommitting >= 198, `${turnsWhileCommitting} turns ran while 198 commits were made`);
    // Reads did see commits before lmdb-js told of them (its disk sync comes between), so the check above was made there.
    assert.ok(seenAhead > 0, 'no read saw a commit before it was told of');
  });

  it('keeps the writes that can wait until the commit is done, and refuses the others meanwhile', async () => {
    const committed = store.applyEventsInBackground([put('a', '1', 2)], identity, 2);
    store.saveMembers({ source: 'endpoints', clientUrls: ['http://127.0.0.1:2379'] });
    store.updateMeta({ compactRevision: 2 });
    // A compaction counts at once for reads, written or not.
    assert.equal(store.meta().compactRevision, 2);
    assert.throws(() => store.wipe(), /while a commit is in flight/);
    assert.throws(() => store.applyEvents([put('b', '1', 3)], identity), /while a commit is in flight/);
    assert.throws(() => store.beginSnapshot(), /while a commit is in flight/);
    assert.equal(await committed, 2);
    await store.idle();
    assert.deepEqual(store.members(), { source: 'endpoints', clientUrls: ['http://127.0.0.1:2379'] });
    await store.close();
    // The meta on disk has both the commit's revision and the compaction learnt while it was made.
    store = openStore(dir);
    assert.equal(store.meta().revision, 2);
    assert.equal(store.meta().compactRevision, 2);
    store.wipe();
    assert.equal(store.meta().revision, 0);
  });
});

describe('BackgroundCommits on a full disk', () => {
  it('writes nothing and holds writes when the reserve finds no room', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ecp-background-full-'));
    const tables = openStoreTables(dir, false);
    try {
      const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      const fullDisk = { ensure: () => { throw enospc; }, close: () => undefined } as unknown as SpaceReserve;
      const guard = new WriteGuard(fullDisk);
      const background = new BackgroundCommits({ tables, meta: EMPTY_META }, guard);
      await assert.rejects(background.commit([put('a', '1', 2)], identity, 2, 100), StoreFull);
      assert.notEqual(guard.held, null);
      assert.equal(tables.log.getKeysCount(), 0);
      assert.equal(tables.meta.get('meta'), undefined);
      assert.equal(background.busy, false);
      // Held: refused before anything starts.
      await assert.rejects(background.commit([put('a', '1', 2)], identity, 2, 100), StoreFull);
    } finally {
      await tables.root.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
