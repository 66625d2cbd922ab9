// Unit (temporary LMDB, written here as the primary writes it and read through a second, read-only
// handle as a --workers serving process reads it; no network): what a worker's mirror tells its caches
// and watches. The primary tells each commit by IPC, a new revision first and a replacement of the store
// (a list, a snapshot adopted) after it; a worker that read the store between the two took the replaced
// store for the next revision of the old one, told its answer cache nothing changed, and answered a
// kept answer from before the replacement under the new revision (the robustness run on etcd 3.5 found
// one: a key's older value with a header revision at which etcd held a newer one). It now waits for the
// notice of the replacement, staying at the revision it followed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import { AuthGate } from '../../src/auth/auth-gate';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { openStore, type MirrorStore } from '../../src/store/store';
import { startFollowerMirror, type FollowerMirror } from '../../src/workers/follower-mirror';

const identity = { cluster_id: '1', member_id: '2', raft_term: '3' };
const keyValue = (key: string, revision: number): ReturnType<typeof encodeKeyValue> =>
  encodeKeyValue({ key: Buffer.from(key), value: Buffer.from(`v${revision}`), create_revision: revision, mod_revision: revision, version: 1, lease: '0' });

describe('a worker following the primary (unit)', () => {
  let dir: string;
  let primary: MirrorStore;
  let workerStore: MirrorStore;
  let follower: FollowerMirror;
  const told: string[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-follower-'));
    primary = openStore(dir);
    for (let revision = 1; revision <= 5; revision += 1) primary.applyEvents([encodeEvent('PUT', keyValue('leader', revision))], identity);
    workerStore = openStore(dir, { readOnly: true });
    follower = startFollowerMirror(workerStore, new AuthGate(pino({ level: 'silent' })), () => undefined);
    told.length = 0;
    follower.on('applied', (revision) => told.push(`applied ${revision}`));
    follower.on('adopted', (revision, previous) => told.push(`adopted ${revision} from ${previous}`));
    follower.on('relisted', (revision, previous) => told.push(`relisted ${revision} from ${previous}`));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const adopt = (revision: number): void => {
    const writer = primary.beginSnapshot();
    writer.putPage([keyValue('leader', revision)]);
    writer.commit(revision, identity, 0, primary.meta().scope);
  };

  it('follows commits one revision at a time, each told with its events', async () => {
    primary.applyEvents([encodeEvent('PUT', keyValue('leader', 6))], identity);
    follower.follow({ kind: 'revision', revision: 6 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(follower.revision(), 6);
    assert.deepEqual(told, ['applied 6']);
  });

  it('stays at the revision it followed when the store was replaced, until the notice of it', async () => {
    assert.equal(follower.revision(), 5);
    adopt(20);
    // The new revision's notice comes first: the store shows 20, and its log does not reach back to 6.
    follower.follow({ kind: 'revision', revision: 20 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(follower.revision(), 5, 'the worker took the adopted store for the next revision of the old one');
    assert.deepEqual(told, []);
    follower.follow({ kind: 'adopted', revision: 20, previous: 5 });
    assert.equal(follower.revision(), 20);
    assert.deepEqual(told, ['adopted 20 from 5']);
  });

  it('takes the store as listed anew when no notice comes (its log pruned past a worker far behind)', async () => {
    adopt(20);
    follower.follow({ kind: 'revision', revision: 20 });
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    assert.equal(follower.revision(), 20);
    assert.deepEqual(told, ['relisted 20 from 5']);
  });
});
