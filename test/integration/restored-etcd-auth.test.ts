// Integration (real etcd with auth on, restored from a snapshot): the mirror reads as --user with etcd's
// simple token, which names the raft index it was issued at. A restored etcd starts a new raft log, far
// below that index, and holds every call carrying the token until its log gets there: the mirror's calls
// ran into their deadline over and over, and it never noticed the restore while etcd stayed quiet (the
// robustness run's restore fault, with auth, found proxies still serving what the restore took back).
// The member's raft index, which its Status tells, now shows the token can never be taken: it logs in again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { enableAuth, ROOT_PASSWORD, withToken } from '../support/etcd-auth';
import { restoreEtcdFromSnapshot, saveEtcdSnapshot } from '../support/etcd-restore';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);

describe('etcd with auth restored from a snapshot', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let rootToken: string;
  const work = mkdtempSync(join(tmpdir(), 'ecp-restored-auth-'));

  const put = async (key: string): Promise<number> => {
    const clients = rawClients(etcd.clientAddress);
    try {
      const outcome = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b(key), value: b('v') }, { metadata: withToken(rootToken), deadlineMs: 5_000 });
      assert.equal(outcome.error, null, outcome.error?.details);
      return Number(outcome.response?.header?.revision ?? 0);
    } finally {
      clients.close();
    }
  };
  const mirrorRevision = async (): Promise<number> => (await proxy.metrics.mirrorRevision.get()).values[0]?.value ?? 0;

  before(async () => {
    etcd = await startEtcd();
    const tokens = await enableAuth(etcd.clientAddress, [{ name: 'read-all', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] }], [{ name: 'reader', password: 'reader-pw', roles: ['read-all'] }]);
    rootToken = tokens.get('root') ?? '';
    // Raft entries, so that the proxy's token (issued when it logs in) names a high index.
    for (let i = 0; i < 40; i += 1) await put(`/kept/${i % 4}`);
    proxy = await startTestProxy([etcd.clientUrl], ['--user', 'reader:reader-pw', '--consistency-check-interval', '0']);
  });

  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('logs in again at the restored etcd and lists it, though nothing is written there', async () => {
    const snapshot = join(work, 'snapshot.db');
    await saveEtcdSnapshot(etcd, snapshot, `root:${ROOT_PASSWORD}`);
    let lost = 0;
    for (let i = 0; i < 10; i += 1) lost = await put(`/lost/${i}`);
    await proxy.mirrored(lost);

    await restoreEtcdFromSnapshot(etcd, snapshot);
    const status = rawClients(etcd.clientAddress);
    const restoredRevision = Number((await call<{ header?: { revision?: string } }>(status.maintenance, 'Status', {}, { deadlineMs: 5_000 })).response?.header?.revision ?? 0);
    status.close();
    assert.ok(restoredRevision > 0 && restoredRevision < lost, `the restored etcd (${restoredRevision}) is behind the mirror (${lost})`);

    let seen = 0;
    await until(() => `the mirror to list the restored etcd at ${restoredRevision} (it is at ${seen})`, async () => (seen = await mirrorRevision()) === restoredRevision, 30_000, 200);
  });
});
