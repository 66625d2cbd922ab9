// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR): the same client through the proxy in front of etcd 3.5.
// Integration (real etcd, the etcd3 npm client): a Node application pointed
// at the proxy works as it does against etcd.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { noop } from 'cockatiel';
import { Etcd3, type IKeyValue } from 'etcd3';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { until } from '../support/until';
import { startTestProxy, type TestProxy } from '../support/proxy';

type Campaign = ReturnType<ReturnType<Etcd3['election']>['campaign']>;

/**
 * Resolves with the campaign once elected. etcd3 treats the CANCELLED end of
 * a watch stream it cancels itself as a connection failure and closes its
 * channel; a call it starts at that moment fails with "Channel closed before
 * call started" (an etcd3 race, seen under CPU load: the proxy sends no error,
 * its metrics show only the client's cancels). The campaign's own watch ends
 * exactly when the previous leader resigns, so an application campaigns again
 * then, as this does.
 */
async function electedDespiteClientRace(first: Campaign, again: () => Campaign): Promise<Campaign> {
  let campaign = first;
  for (let attempt = 1; ; attempt += 1) {
    try {
      await once(campaign, 'elected');
      return campaign;
    } catch (error) {
      if (attempt >= 3 || !String(error).includes('Channel closed before call started')) throw error;
      campaign = again();
    }
  }
}

describe('the etcd3 client through the proxy', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let client: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    client = new Etcd3({ hosts: proxy.url });
  });
  after(async () => {
    client?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('puts, gets, counts and deletes', async () => {
    await client.put('app/a').value('1');
    await client.put('app/b').value('2');
    await client.put('app/c').value('3');
    assert.equal(await client.get('app/a').string(), '1');
    assert.deepEqual(await client.getAll().prefix('app/').strings(), { 'app/a': '1', 'app/b': '2', 'app/c': '3' });
    assert.equal(await client.getAll().prefix('app/').count(), 3);
    assert.deepEqual(await client.getAll().prefix('app/').limit(2).keys(), ['app/a', 'app/b']);
    const deleted = await client.delete().key('app/b').exec();
    assert.equal(deleted.deleted, '1');
    assert.equal(await client.get('app/b').string(), null);
    await client.delete().prefix('app/');
    assert.equal(await client.getAll().prefix('app/').count(), 0);
  });

  it('runs transactions on both branches', async () => {
    await client.put('txn/k').value('v1');
    const ok = await client.if('txn/k', 'Value', '==', 'v1').then(client.put('txn/k').value('v2')).else(client.put('txn/other').value('x')).commit();
    assert.equal(ok.succeeded, true);
    const failed = await client.if('txn/k', 'Value', '==', 'v1').then(client.put('txn/k').value('v3')).else(client.get('txn/k')).commit();
    assert.equal(failed.succeeded, false);
    assert.equal(failed.responses[0]?.response_range?.kvs[0]?.value.toString(), 'v2');
  });

  it('watches a prefix and sees puts and deletes in order', async () => {
    const watcher = await client.watch().prefix('w/').create();
    const seen: string[] = [];
    watcher.on('put', (kv: IKeyValue) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
    watcher.on('delete', (kv: IKeyValue) => seen.push(`delete ${kv.key.toString()}`));
    await client.put('w/1').value('a');
    await client.put('w/2').value('b');
    await client.delete().key('w/1');
    try {
      await until('three watch events', () => seen.length >= 3, 5_000, 20);
    } finally {
      await watcher.cancel();
    }
    assert.deepEqual(seen, ['put w/1=a', 'put w/2=b', 'delete w/1']);
  });

  it('keeps a lease alive, and lets a key expire with its lease', async () => {
    const kept = client.lease(2);
    await kept.put('lease/kept').value('x');
    const expiring = client.lease(2, { autoKeepAlive: false });
    await expiring.put('lease/expiring').value('y');
    const expiringId = await expiring.grant();
    await until('the key to expire with its lease', async () => (await client.get('lease/expiring').string()) === null, 15_000, 250);
    assert.equal(await client.get('lease/kept').string(), 'x', 'kept-alive key expired');
    const keptId = await kept.grant();
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: keptId });
    assert.ok(Number(ttl.TTL) > 0, `kept lease has ttl ${ttl.TTL}`);
    const leases = await client.leaseClient.leaseLeases();
    const ids = leases.leases.map((l) => l.ID);
    assert.ok(ids.includes(keptId), 'kept lease listed');
    assert.ok(!ids.includes(expiringId), 'expired lease still listed');
    await kept.revoke();
    assert.equal(await client.get('lease/kept').string(), null);
  });

  it('holds a lock against a second holder until released', async () => {
    const first = await client.lock('locks/job').ttl(5).acquire();
    await assert.rejects(() => client.lock('locks/job').ttl(5).acquire());
    await first.release();
    const second = await client.lock('locks/job').ttl(5).acquire();
    await second.release();
  });

  it('elects a leader and hands over on resignation', async (t) => {
    // etcd3's default per-host circuit breaker counts each watch stream it cancels itself as a
    // host failure; with one host (the proxy, or one etcd) three in a row shut every call out for
    // 5 s. An election cancels a watch at each hand-over, so this client runs without it.
    const electionClient = new Etcd3({ hosts: proxy.url, faultHandling: { host: () => noop } });
    t.after(() => electionClient.close());
    const election = electionClient.election('elections/primary', 5);
    const alice = election.campaign('alice');
    await once(alice, 'elected');
    // etcd3's observer, started with no leader yet, takes the last put of its
    // first watch batch as leader (a client quirk, same against etcd), so it
    // starts once there is one.
    const observer = await election.observe();
    const bob = election.campaign('bob');
    await until('the observer to see alice lead', () => observer.leader() === 'alice', 5_000, 20);
    const bobElected = electedDespiteClientRace(bob, () => election.campaign('bob'));
    await alice.resign();
    const bobCampaign = await bobElected;
    assert.equal(await election.leader(), 'bob');
    await bobCampaign.resign();
    await observer.cancel();
  });
});
