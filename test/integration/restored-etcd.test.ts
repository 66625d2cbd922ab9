// Integration (real etcd, etcdctl snapshot save and restore): etcd restored from an older snapshot with the
// same cluster ID answers below the mirror's revision. The mirror, which now believes a member's Status
// behind it only when a linearizable read there says so too (a member cut off from its peers is behind as
// well, lagging-member.test.ts), still takes a restored etcd for what it is: it discards its content and
// lists again, so what was written after the snapshot is gone from it as from etcd.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { restoreEtcdFromSnapshot, saveEtcdSnapshot } from '../support/etcd-restore';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);

interface Answer {
  readonly header?: { readonly revision?: string; readonly cluster_id?: string };
  readonly count?: string;
}

async function ask(address: string, service: 'kv' | 'maintenance', method: string, request: object): Promise<Answer> {
  const clients = rawClients(address);
  try {
    const outcome = await call<Answer>(clients[service], method, request, { deadlineMs: 5_000 });
    assert.equal(outcome.error, null, `${method} at ${address}: ${outcome.error?.details ?? ''}`);
    return outcome.response ?? {};
  } finally {
    clients.close();
  }
}

describe('etcd restored from an older snapshot, same cluster ID', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  const work = mkdtempSync(join(tmpdir(), 'ecp-restored-'));

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl], ['--consistency-check-interval', '0']);
    await proxy.mirrored();
  });

  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('discards the mirror and lists the restored keyspace, ending the watches it relays to etcd as its own', async () => {
    await ask(etcd.clientAddress, 'kv', 'Put', { key: b('/before'), value: b('1') });
    // A watch from revision 1, older than the mirror's log: the proxy relays it to etcd. Resumed on the restored
    // etcd it would go on with another history's events under revisions it had already been given.
    const relayed = new WatchClient(proxy.address);
    relayed.create({ key: b('/'), range_end: b('0'), start_revision: 1 });
    await relayed.next('the relayed watch to replay /before', (response) => (response.events ?? []).length > 0);
    const snapshot = join(work, 'snapshot.db');
    await saveEtcdSnapshot(etcd, snapshot);
    const clusterId = (await ask(etcd.clientAddress, 'maintenance', 'Status', {})).header?.cluster_id;
    let newest = 0;
    for (let i = 0; i < 5; i += 1) newest = Number((await ask(etcd.clientAddress, 'kv', 'Put', { key: b('/after'), value: b(`${i}`) })).header?.revision ?? 0);
    await proxy.mirrored(newest);

    await restoreEtcdFromSnapshot(etcd, snapshot);
    const status = await ask(etcd.clientAddress, 'maintenance', 'Status', {});
    assert.equal(status.header?.cluster_id, clusterId, 'the restore keeps the cluster ID');
    assert.ok(Number(status.header?.revision ?? 0) < newest, 'the restored etcd is behind the mirror');

    await until(
      'the mirror to hold the restored keyspace (no /after)',
      async () => {
        const read = await ask(proxy.address, 'kv', 'Range', { key: b('/after'), serializable: true, count_only: true });
        return Number(read.count ?? 0) === 0;
      },
      30_000,
      200,
    );
    const before = await ask(proxy.address, 'kv', 'Range', { key: b('/before'), serializable: true, count_only: true });
    assert.equal(Number(before.count ?? 0), 1);
    try {
      const ended = await relayed.next('the relayed watch to end as compacted', (response) => response.canceled === true, 0, 30_000);
      assert.ok(Number(ended.compact_revision ?? 0) > 0, JSON.stringify(ended));
    } finally {
      relayed.close();
    }
  });
});

// A proxy mirroring one prefix keeps the highest revision it handed out in etcd's answers (a read of a key
// outside the mirror): a mirror read below it waits, then goes to etcd. After etcd was restored below that
// revision, the mirror goes on under it (its prefix did not change: nothing to discard); if the proxy still
// held it, every read of the mirror would go to etcd until etcd's revisions passed it again. The first write
// through the proxy answered below it shows etcd went back.
describe('etcd restored, with a prefix mirror: what was handed out before the restore holds nothing back', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  const work = mkdtempSync(join(tmpdir(), 'ecp-restored-floor-'));

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', '/m/', '--consistency-check-interval', '0']);
    await proxy.mirrored();
  });

  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const mirrorRanges = async (): Promise<number> => {
    const text = await (await fetch(`${proxy.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('etcd_cache_proxy_grpc_requests_total{service="KV",method="Range",code="OK",source="mirror"}'));
    return Number(line?.split(' ')[1] ?? 0);
  };

  it('reads the restored mirror from the mirror, not from etcd', async () => {
    await ask(etcd.clientAddress, 'kv', 'Put', { key: b('/m/a'), value: b('1') });
    const snapshot = join(work, 'snapshot.db');
    await saveEtcdSnapshot(etcd, snapshot);
    for (let i = 0; i < 20; i += 1) await ask(etcd.clientAddress, 'kv', 'Put', { key: b('/other'), value: b(`${i}`) });
    // Outside the mirror: etcd answers it, at its newest revision, through the proxy.
    const handedOut = Number((await ask(proxy.address, 'kv', 'Range', { key: b('/other') })).header?.revision ?? 0);

    await restoreEtcdFromSnapshot(etcd, snapshot);
    // A write through the proxy: its revision, below what was handed out, tells the proxy etcd went back. Right
    // after the restart the proxy's connection to etcd may still wait out its reconnect: such a write is refused
    // before it is sent ("etcd-cache-proxy: no upstream member reachable"), and the client sends it again, as a client would.
    const marker = await untilValue('a write through the proxy to reach the restored etcd', async () => {
      const clients = rawClients(proxy.address);
      try {
        const outcome = await call<Answer>(clients.kv, 'Put', { key: b('/m/b'), value: b('restored') }, { deadlineMs: 5_000 });
        if (outcome.error !== null && outcome.error.details === 'etcd-cache-proxy: no upstream member reachable') return undefined;
        assert.equal(outcome.error, null, `Put at ${proxy.address}: ${outcome.error?.details ?? ''}`);
        return Number(outcome.response?.header?.revision ?? 0);
      } finally {
        clients.close();
      }
    }, 10_000, 200);
    assert.ok(marker < handedOut, `the restored etcd (${marker}) is behind what the proxy handed out (${handedOut})`);
    await until(
      'the mirror to hold the restored keyspace',
      async () => Number((await ask(proxy.address, 'kv', 'Range', { key: b('/m/b'), serializable: true, count_only: true })).count ?? 0) === 1,
      30_000,
      200,
    );

    const before = await mirrorRanges();
    for (let i = 0; i < 5; i += 1) {
      const read = await ask(proxy.address, 'kv', 'Range', { key: b('/m/'), range_end: b('/m0'), serializable: true });
      assert.equal(Number(read.header?.revision ?? 0), marker, 'the restored etcd\'s revision');
    }
    assert.equal((await mirrorRanges()) - before, 5, 'all five answered from the mirror');
  });
});

// etcd restored with the same cluster ID, then written past the mirror's revision while the proxy was away:
// its Status is ahead of the mirror, as if nothing happened, and the mirror's watch from M + 1 would go on
// with writes of another history on top of what the restore took back. The mirror's newest logged put, read
// at its revision from etcd, tells the two histories apart.
describe('etcd restored and written past the mirror before the proxy comes back', () => {
  let etcd: EtcdServer;
  const work = mkdtempSync(join(tmpdir(), 'ecp-restored-past-'));
  const dataDir = join(work, 'proxy');

  before(async () => {
    etcd = await startEtcd();
  });

  after(async () => {
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const keys = async (address: string, serializable: boolean): Promise<{ revision: number; keys: string[] }> => {
    const clients = rawClients(address);
    try {
      const outcome = await call<{ header?: { revision?: string }; kvs?: { key: Buffer; mod_revision?: string }[] }>(clients.kv, 'Range', { key: b('/'), range_end: b('0'), serializable }, { deadlineMs: 5_000 });
      assert.equal(outcome.error, null, outcome.error?.details);
      return { revision: Number(outcome.response?.header?.revision ?? 0), keys: (outcome.response?.kvs ?? []).map((kv) => `${kv.key.toString()}@${kv.mod_revision ?? ''}`) };
    } finally {
      clients.close();
    }
  };

  it('discards the mirror and lists the restored etcd, instead of going on from its revision', async () => {
    let proxy = await startTestProxy([etcd.clientUrl], ['--consistency-check-interval', '0'], { dataDir });
    await ask(etcd.clientAddress, 'kv', 'Put', { key: b('/kept'), value: b('1') });
    const snapshot = join(work, 'snapshot.db');
    await saveEtcdSnapshot(etcd, snapshot);
    let lost = 0;
    for (let i = 0; i < 10; i += 1) lost = Number((await ask(etcd.clientAddress, 'kv', 'Put', { key: b(`/lost/${i}`), value: b('x') })).header?.revision ?? 0);
    await proxy.mirrored(lost);
    await proxy.stop();

    await restoreEtcdFromSnapshot(etcd, snapshot);
    let newest = 0;
    for (let i = 0; i < 20; i += 1) newest = Number((await ask(etcd.clientAddress, 'kv', 'Put', { key: b(`/new/${i % 5}`), value: b(`${i}`) })).header?.revision ?? 0);
    assert.ok(newest > lost, `etcd (${newest}) went past the mirror (${lost})`);

    proxy = await startTestProxy([etcd.clientUrl], ['--consistency-check-interval', '0'], { dataDir });
    try {
      await proxy.mirrored(newest);
      const fromEtcd = await keys(etcd.clientAddress, false);
      const fromProxy = await keys(proxy.address, true);
      assert.deepEqual(fromProxy, fromEtcd, 'the proxy answers what the restored etcd holds, nothing the restore took back');
    } finally {
      await proxy.stop();
    }
  });

  it('does so too when the mirror was only listed (no event logged since): its key written last is compared', async () => {
    const snapshot = join(work, 'snapshot-listed.db');
    await saveEtcdSnapshot(etcd, snapshot);
    let lost = 0;
    for (let i = 0; i < 10; i += 1) lost = Number((await ask(etcd.clientAddress, 'kv', 'Put', { key: b(`/lost-listed/${i}`), value: b('x') })).header?.revision ?? 0);
    const listedDir = join(work, 'proxy-listed');
    let proxy = await startTestProxy([etcd.clientUrl], ['--consistency-check-interval', '0'], { dataDir: listedDir });
    await proxy.mirrored(lost);
    await proxy.stop();

    await restoreEtcdFromSnapshot(etcd, snapshot);
    let newest = 0;
    for (let i = 0; i < 20; i += 1) newest = Number((await ask(etcd.clientAddress, 'kv', 'Put', { key: b(`/new-listed/${i % 5}`), value: b(`${i}`) })).header?.revision ?? 0);
    assert.ok(newest > lost, `etcd (${newest}) went past the mirror (${lost})`);

    proxy = await startTestProxy([etcd.clientUrl], ['--consistency-check-interval', '0'], { dataDir: listedDir });
    try {
      await proxy.mirrored(newest);
      assert.deepEqual(await keys(proxy.address, true), await keys(etcd.clientAddress, false), 'nothing the restore took back');
    } finally {
      await proxy.stop();
    }
  });
});
