// Integration (real multi-member etcd clusters on loopback, a DNS server on
// loopback for SRV): the proxy finds every member from --initial-cluster or
// DNS SRV, follows members added and removed, remembers the list across a
// restart, and never forwards to itself.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { freePort } from '../support/etcd';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster';
import { startDnsServer, type DnsServer } from '../support/dns-server';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);

/** The client URLs the proxy dials, from its per-member gauge. */
async function proxyMembers(proxy: TestProxy): Promise<string[]> {
  return (await proxy.metrics.upstreamMemberUp.get()).values.map((v) => String(v.labels.member)).sort();
}

async function healthyMembers(proxy: TestProxy): Promise<number> {
  return (await proxy.metrics.upstreamMembersHealthy.get()).values[0]?.value ?? 0;
}

const sorted = (urls: readonly string[]): string[] => [...urls].sort();

/** A write and a linearizable read through the proxy both work. */
async function worksThrough(proxy: TestProxy, key: string): Promise<void> {
  const clients = rawClients(proxy.address);
  try {
    const put = await call(clients.kv, 'Put', { key: b(key), value: b('v') }, { deadlineMs: 5_000 });
    assert.equal(put.error, null, put.error?.details);
    const got = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', { key: b(key) }, { deadlineMs: 5_000 });
    assert.equal(got.error, null, got.error?.details);
    assert.equal(got.response?.kvs?.[0]?.value.toString(), 'v');
  } finally {
    clients.close();
  }
}

describe('membership: discovery and refresh', () => {
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('finds every member from --initial-cluster alone', async () => {
    const proxy = await startTestProxy([], ['--initial-cluster', cluster.initialCluster()]);
    try {
      const expected = sorted(cluster.members.map((m) => m.clientUrl));
      await until('three members known', async () => (await proxyMembers(proxy)).length === 3);
      assert.deepEqual(await proxyMembers(proxy), expected);
      await until('all three healthy', async () => (await healthyMembers(proxy)) === 3);
      await proxy.mirrored();
      await worksThrough(proxy, 'found/initial-cluster');
    } finally {
      await proxy.stop();
    }
  });

  it('finds every member from DNS SRV records (_etcd-client._tcp, and with --discovery-srv-name)', async () => {
    const srv = cluster.members.map((m, i) => ({ target: `m${i + 1}.etcd.test`, port: Number(new URL(m.clientUrl).port) }));
    const dns: DnsServer = await startDnsServer({
      srv: { '_etcd-client._tcp.etcd.test': srv, '_etcd-client-blue._tcp.etcd.test': srv.slice(0, 2) },
      a: Object.fromEntries(srv.map((s) => [s.target, '127.0.0.1'])),
    });
    try {
      const plain = await startTestProxy([], ['--discovery-srv', 'etcd.test', '--discovery-dns-server', dns.address, '--sync-interval', '1h']);
      try {
        await until('three members known', async () => (await proxyMembers(plain)).length === 3);
        assert.deepEqual(await proxyMembers(plain), sorted(cluster.members.map((m) => m.clientUrl)));
        await plain.mirrored();
        await worksThrough(plain, 'found/srv');
      } finally {
        await plain.stop();
      }
      assert.ok(dns.queries.some((q) => q.name === '_etcd-client-ssl._tcp.etcd.test'), 'the TLS service name is asked too, as etcd does');

      // The named service lists two members; the member list refresh then finds the third.
      const named = await startTestProxy([], ['--discovery-srv', 'etcd.test', '--discovery-srv-name', 'blue', '--discovery-dns-server', dns.address]);
      try {
        await until('three members known after the first refresh', async () => (await proxyMembers(named)).length === 3);
        assert.ok(dns.queries.some((q) => q.name === '_etcd-client-blue._tcp.etcd.test'));
      } finally {
        await named.stop();
      }
    } finally {
      await dns.close();
    }
  });

  it('follows a member added and a member removed within one sync interval', async () => {
    const syncIntervalMs = 1_000;
    const first = cluster.members[0];
    assert.ok(first !== undefined);
    const proxy = await startTestProxy([first.clientUrl], ['--sync-interval', `${syncIntervalMs}ms`]);
    try {
      await until('the static endpoint grows into the whole cluster', async () => (await proxyMembers(proxy)).length === 3);
      const refreshesBefore = (await proxy.metrics.memberListRefreshes.get()).values.find((v) => v.labels.result === 'ok')?.value ?? 0;
      assert.ok(refreshesBefore >= 1);

      const added = await cluster.addMember('m4');
      const addedAt = Date.now();
      await until('the new member is known', async () => (await proxyMembers(proxy)).includes(added.clientUrl));
      // one interval, plus a refresh in flight and a loaded machine
      assert.ok(Date.now() - addedAt < syncIntervalMs * 5, `learned after ${Date.now() - addedAt} ms`);

      const leaving = cluster.members.find((m) => m.name === 'm2');
      assert.ok(leaving !== undefined);
      await cluster.removeMember(leaving);
      await until('the removed member is dropped', async () => !(await proxyMembers(proxy)).includes(leaving.clientUrl));
      assert.deepEqual(await proxyMembers(proxy), sorted(cluster.members.map((m) => m.clientUrl)));
      await worksThrough(proxy, 'found/after-change');
    } finally {
      await proxy.stop();
    }
  });

  it('remembers the member list with the mirror: restarted while its only configured endpoint is dead, it reaches the others', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ecp-proxy-members-'));
    const first = cluster.members[0];
    assert.ok(first !== undefined);
    try {
      const proxy = await startTestProxy([first.clientUrl], [], { dataDir });
      await until('the whole cluster known', async () => (await proxyMembers(proxy)).length === cluster.members.length);
      await proxy.mirrored();
      await proxy.stop();

      first.signal('SIGKILL');
      await until('the cluster without its first member answers', async () => {
        const other = cluster.members.find((m) => m !== first);
        if (other === undefined) return false;
        const clients = rawClients(other.clientAddress);
        const put = await call(clients.kv, 'Put', { key: b('found/quorum'), value: b('ok') }, { deadlineMs: 2_000 });
        clients.close();
        return put.error === null;
      }, 30_000);

      const restarted = await startTestProxy([first.clientUrl], [], { dataDir });
      try {
        await until('a remembered member healthy', async () => (await healthyMembers(restarted)) >= 1);
        assert.equal((await restarted.metrics.upstreamUp.get()).values[0]?.value, 1);
        await worksThrough(restarted, 'found/remembered');
      } finally {
        await restarted.stop();
      }
    } finally {
      await first.restart();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('membership: the loop guard', () => {
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('refuses its own address as an endpoint (by address and by name), logs it, and answers at once instead of looping', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const port = await freePort();
      const proxy = await startTestProxy([`http://${host}:${port}`], ['--listen-addr', `127.0.0.1:${port}`, '--upstream-timeout', '500ms']);
      try {
        await until('the endpoint dropped', async () => ((await proxy.metrics.loopEndpointsDropped.get()).values[0]?.value ?? 0) === 1);
        assert.deepEqual(await proxyMembers(proxy), []);
        const clients = rawClients(proxy.address);
        try {
          const started = Date.now();
          const put = await call(clients.kv, 'Put', { key: b('loop'), value: b('x') }, { deadlineMs: 10_000 });
          assert.equal(put.error?.code, status.UNAVAILABLE, put.error?.details);
          assert.ok(Date.now() - started < 5_000, 'answered, not looped until the deadline');
        } finally {
          clients.close();
        }
      } finally {
        await proxy.stop();
      }
    }
  });

  it('drops a member whose advertised client URL is the proxy, at the next refresh, and keeps the others', async () => {
    const port = await freePort();
    const self = `http://127.0.0.1:${port}`;
    const first = cluster.members[0];
    assert.ok(first !== undefined);
    const proxy = await startTestProxy([first.clientUrl], ['--listen-addr', `127.0.0.1:${port}`, '--sync-interval', '500ms']);
    try {
      await until('three members known', async () => (await proxyMembers(proxy)).length === 3);
      const rogue = await cluster.addMember('rogue', { advertiseClientUrl: self });
      await until('a refresh that saw the rogue member', async () => ((await proxy.metrics.loopEndpointsDropped.get()).values[0]?.value ?? 0) >= 1);
      // Two more refreshes: it stays out, and is not re-added.
      const refreshes = async (): Promise<number> => (await proxy.metrics.memberListRefreshes.get()).values.find((v) => v.labels.result === 'ok')?.value ?? 0;
      const seen = await refreshes();
      await until('two more member-list refreshes', async () => (await refreshes()) >= seen + 2);
      assert.equal((await proxy.metrics.loopEndpointsDropped.get()).values[0]?.value, 1, 'logged and counted once');
      assert.deepEqual(await proxyMembers(proxy), sorted(cluster.members.filter((m) => m !== rogue).map((m) => m.clientUrl)));
      await worksThrough(proxy, 'loop/rogue');
      await cluster.removeMember(rogue);
    } finally {
      await proxy.stop();
    }
  });

  it('two proxies pointed at each other: the loop is found through the via marker and broken, calls answer at once', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const a = await startTestProxy([`http://127.0.0.1:${portB}`], ['--listen-addr', `127.0.0.1:${portA}`, '--upstream-timeout', '500ms']);
    const bProxy = await startTestProxy([`http://127.0.0.1:${portA}`], ['--listen-addr', `127.0.0.1:${portB}`, '--upstream-timeout', '500ms']);
    try {
      const dropped = async (proxy: TestProxy): Promise<number> => (await proxy.metrics.loopEndpointsDropped.get()).values[0]?.value ?? 0;
      // The first probe that goes round the loop breaks it; the other proxy then just sees an upstream with no members.
      await until('one proxy dropped the other', async () => (await dropped(a)) + (await dropped(bProxy)) >= 1);
      const breaker = (await dropped(a)) >= 1 ? a : bProxy;
      assert.deepEqual(await proxyMembers(breaker), []);
      for (const proxy of [a, bProxy]) {
        const clients = rawClients(proxy.address);
        try {
          const started = Date.now();
          const got = await call(clients.kv, 'Range', { key: b('loop'), serializable: false }, { deadlineMs: 10_000 });
          assert.notEqual(got.error, null);
          assert.notEqual(got.error?.code, status.DEADLINE_EXCEEDED, 'a call must not circle until its deadline');
          assert.ok(Date.now() - started < 5_000);
        } finally {
          clients.close();
        }
      }
    } finally {
      await Promise.all([a.stop(), bProxy.stop()]);
    }
  });
});
