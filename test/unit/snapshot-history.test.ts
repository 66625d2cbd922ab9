// Unit (temporary LMDB, no network): a mirror that holds keys takes a published snapshot only of its own
// history. etcd restored from a backup with the same cluster ID makes other writes under the revisions it
// had made before; a snapshot published before the restore names a higher revision than the restored
// etcd's, and a proxy whose mirror followed the restored etcd took it for newer during an outage and served
// the history etcd no longer has (found by the robustness run: restore, then every member down).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { openSnapshot } from '../../src/snapshot/format';
import { restoreInto } from '../../src/snapshot/restore';
import { saveFromStore } from '../../src/snapshot/save';
import { openStore, type MirrorStore } from '../../src/store/store';

const identity = { cluster_id: '7', member_id: '8', raft_term: '2' };
const dirs: string[] = [];

/**
 * A store that followed etcd from revision 2 to `to`: up to revision 10 the history every side shares (the
 * backup's), then one new key per revision whose value names `history` (a restore makes another one).
 */
function storeWith(history: string, to: number): MirrorStore {
  const dir = mkdtempSync(join(tmpdir(), 'ecp-snapshot-history-'));
  dirs.push(dir);
  const store = openStore(dir);
  for (let revision = 2; revision <= to; revision += 1) {
    const value = revision <= 10 ? `shared-${revision}` : `${history}-${revision}`;
    const kv = encodeKeyValue({ key: Buffer.from(`k${revision}`), value: Buffer.from(value), create_revision: revision, mod_revision: revision, version: 1, lease: '0' });
    store.applyEvents([encodeEvent('PUT', kv)], identity);
  }
  return store;
}

describe('adopting a published snapshot into a mirror that holds keys (unit)', () => {
  const published = join(mkdtempSync(join(tmpdir(), 'ecp-snapshot-file-')), 'snapshot.jsonl');
  dirs.push(join(published, '..'));

  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('takes a newer snapshot of its own history', async () => {
    const publisher = storeWith('x', 30);
    await saveFromStore(publisher, published, 'mirror');
    await publisher.close();
    const behind = storeWith('x', 20);
    const restored = await restoreInto(behind, await openSnapshot(published), { extending: true });
    assert.equal(restored.revision, 30);
    assert.equal(behind.get(Buffer.from('k30'))?.value.toString(), 'x-30');
    await behind.close();
  });

  it('refuses one of another history, and keeps its own mirror', async () => {
    const restoredEtcd = storeWith('y', 20);
    await assert.rejects(restoreInto(restoredEtcd, await openSnapshot(published), { extending: true }), /another history than the mirror/);
    assert.equal(restoredEtcd.meta().revision, 20);
    assert.equal(restoredEtcd.get(Buffer.from('k20'))?.value.toString(), 'y-20');
    // Without the check (an empty data dir, or `snapshot restore --force`), the same snapshot is taken.
    const forced = await restoreInto(restoredEtcd, await openSnapshot(published));
    assert.equal(forced.revision, 30);
    await restoredEtcd.close();
  });
});
