// Unit (an in-memory bucket; no S3, no etcd): publishing after etcd was restored from a backup. A snapshot
// published just before the restore names a revision the restored etcd reaches again only later, with
// other writes; "one not newer than latest skips" kept it as `latest` for as long as that took, and a
// machine wiped during an outage then served the history etcd no longer had (the robustness run on etcd
// 3.5: its watches ended as compacted when it met etcd again). A manifest past etcd's revision, asked
// after the manifest was read, is of that lost history: it does not make a publisher skip, `latest` never
// names it, and it is pruned. The same manifest while etcd is past it stays newest.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { SnapshotBucket, StoredObject } from '../../src/objectstore/bucket';
import { publishSnapshot, readLatest } from '../../src/objectstore/publish';
import type { SnapshotHeader } from '../../src/snapshot/format';

function memoryBucket(): SnapshotBucket & { names(): string[] } {
  const objects = new Map<string, Buffer>();
  return {
    location: { bucket: 'test', prefix: '' } as unknown as SnapshotBucket['location'],
    async put(name, body) {
      objects.set(name, Buffer.from(body));
    },
    async putFile(name) {
      objects.set(name, Buffer.from('snapshot'));
    },
    async get(name) {
      return objects.get(name) ?? null;
    },
    async download() {
      throw new Error('not used');
    },
    async list(prefix): Promise<StoredObject[]> {
      return [...objects].filter(([name]) => name.startsWith(prefix)).map(([name, body]) => ({ name, bytes: body.length }));
    },
    async delete(names) {
      for (const name of names) objects.delete(name);
    },
    close: () => undefined,
    names: () => [...objects.keys()].sort(),
  };
}

describe('publishing after etcd was restored from a backup (unit)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ecp-publish-restored-'));
  const file = join(dir, 'snapshot.jsonl');
  writeFileSync(file, 'snapshot');
  after(() => rmSync(dir, { recursive: true, force: true }));

  const header = (revision: number): SnapshotHeader =>
    ({ format: 'etcd-cache-proxy-snapshot', version: 1, revision: String(revision), compact_revision: '0', cluster_id: '7', member_id: '1', raft_term: '2', scope: 'all', created_at: '', source: '' }) as unknown as SnapshotHeader;
  const publish = (bucket: SnapshotBucket, revision: number, clusterRevision: number | null) =>
    publishSnapshot(bucket, { file, header: header(revision), apisixYaml: null, publisher: 'p', keep: 3, signer: null, trust: null, clusterRevision: () => Promise.resolve(clusterRevision) });

  it('replaces a latest of the lost history with the restored history, and prunes the lost one', async () => {
    const bucket = memoryBucket();
    await publish(bucket, 8571, 8571);
    assert.equal((await readLatest(bucket))?.revision, '8571');
    // etcd restored to 8485; its new history is at 8530, behind the published 8571.
    const result = await publish(bucket, 8530, 8531);
    assert.equal(result.kind, 'published');
    assert.equal((await readLatest(bucket))?.revision, '8530');
    assert.ok(!bucket.names().some((name) => name.includes('8571')), `the lost history's objects are gone: ${bucket.names().join(', ')}`);
  });

  it('skips as before when etcd is past latest (a newer snapshot from another publisher), or cannot be asked', async () => {
    const bucket = memoryBucket();
    await publish(bucket, 8571, 8571);
    assert.equal((await publish(bucket, 8530, 8600)).kind, 'skipped');
    assert.equal((await publish(bucket, 8530, null)).kind, 'skipped');
    assert.equal((await readLatest(bucket))?.revision, '8571');
  });

  it('never points latest at a lost manifest that another publisher listed after its own', async () => {
    const bucket = memoryBucket();
    await publish(bucket, 100, 100);
    await publish(bucket, 200, 200);
    // Restored to 150: a publisher at 160 sets latest to its own, never back to 200.
    await publish(bucket, 160, 161);
    assert.equal((await readLatest(bucket))?.revision, '160');
    // Past the restore's lost revisions again, 200 is no longer lost (here: another publisher's newer one).
    await publish(bucket, 210, 215);
    assert.equal((await readLatest(bucket))?.revision, '210');
  });
});
