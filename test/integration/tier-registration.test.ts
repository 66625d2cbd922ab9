// Integration (real etcd, proxy processes): proxies of one tier list each
// other, as etcd grpc-proxy's do with --resolver-prefix/--resolver-ttl. Each
// registers its advertised URL under the prefix with a lease; MemberList (and
// so etcdctl, and clients that sync their endpoints) through any of them lists
// the live ones; a killed proxy leaves the list when its lease expires, a
// restarted one comes back, and a lost lease is registered again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { enableAuth } from '../support/etcd-auth';
import { etcdctl } from '../support/etcdctl';
import { startProxyProcess, startTestProxy, type ProxyProcess } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';

const PREFIX = '/tier/regional';
/** etcd's least lease TTL with its default election timeout is 2 s: a TTL it grants as asked. */
const TTL_SECONDS = 2;
const TIER_ARGS = ['--resolver-prefix', PREFIX, '--resolver-ttl', String(TTL_SECONDS)];

interface Member {
  ID?: string;
  name?: string;
  clientURLs?: string[];
  peerURLs?: string[];
}

/** The client URLs MemberList through `address` lists, sorted; null when the call failed. */
async function listedUrls(address: string): Promise<string[] | null> {
  const clients = rawClients(address);
  try {
    const { error, response } = await call<{ members?: Member[] }>(clients.cluster, 'MemberList', {}, { deadlineMs: 3_000 });
    if (error !== null) return null;
    return (response?.members ?? []).flatMap((m) => m.clientURLs ?? []).sort();
  } finally {
    clients.close();
  }
}

async function memberList(address: string): Promise<Member[]> {
  const clients = rawClients(address);
  try {
    const { error, response } = await call<{ members?: Member[] }>(clients.cluster, 'MemberList', {}, { deadlineMs: 3_000 });
    assert.equal(error, null, error?.details);
    return response?.members ?? [];
  } finally {
    clients.close();
  }
}

interface StoredKv {
  key: Buffer;
  value: Buffer;
  lease?: string;
}

/** What etcd itself holds under the prefix (read from etcd, not through a proxy). */
async function registered(etcd: EtcdServer): Promise<StoredKv[]> {
  const clients = rawClients(etcd.clientAddress);
  try {
    const { error, response } = await call<{ kvs?: StoredKv[] }>(clients.kv, 'Range', { key: Buffer.from(`${PREFIX}/`), range_end: Buffer.from(`${PREFIX}0`) }, { deadlineMs: 3_000 });
    assert.equal(error, null, error?.details);
    return response?.kvs ?? [];
  } finally {
    clients.close();
  }
}

async function leaseCount(etcd: EtcdServer): Promise<number> {
  const clients = rawClients(etcd.clientAddress);
  try {
    const { error, response } = await call<{ leases?: { ID: string }[] }>(clients.lease, 'LeaseLeases', {}, { deadlineMs: 3_000 });
    assert.equal(error, null, error?.details);
    return response?.leases?.length ?? 0;
  } finally {
    clients.close();
  }
}

const urlOf = (proxy: ProxyProcess): string => `http://${proxy.address}`;
const sameList = (listed: string[] | null, expected: readonly string[]): boolean => JSON.stringify(listed) === JSON.stringify([...expected].sort());

describe('tiers: proxies that list each other (--resolver-prefix, --resolver-ttl)', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('MemberList and etcdctl through either proxy list both; a killed one leaves after its TTL, a restarted one comes back', async () => {
    const a = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    let b = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    try {
      const both = [urlOf(a), urlOf(b)];
      await until('MemberList through A lists A and B', async () => sameList(await listedUrls(a.address), both));
      await until('MemberList through B lists A and B', async () => sameList(await listedUrls(b.address), both));
      // Members as grpc-proxy builds them: a name (the host's), the advertised URL, no peer URLs; IDs told apart.
      const members = await memberList(a.address);
      assert.equal(members.length, 2);
      assert.equal(new Set(members.map((m) => m.ID)).size, 2);
      for (const m of members) {
        assert.ok((m.name ?? '') !== '');
        assert.deepEqual(m.peerURLs ?? [], []);
      }
      // Stored as grpc-proxy's endpoints manager stores it: prefix/address, its JSON, under a lease.
      const stored = await registered(etcd);
      assert.deepEqual(stored.map((kv) => kv.key.toString()).sort(), both.map((url) => `${PREFIX}/${url}`).sort());
      for (const kv of stored) {
        const value = JSON.parse(kv.value.toString()) as { Op: number; Addr: string; Metadata: string };
        assert.equal(value.Op, 0);
        assert.equal(kv.key.toString(), `${PREFIX}/${value.Addr}`);
        assert.ok(typeof (JSON.parse(value.Metadata) as { name?: unknown }).name === 'string');
        assert.ok((kv.lease ?? '0') !== '0', 'registered with a lease');
      }

      // The JSON gateway answers the same list.
      const json = (await (await fetch(`${urlOf(b)}/v3/cluster/member/list`, { method: 'POST', body: '{}' })).json()) as { members?: Member[] };
      assert.deepEqual((json.members ?? []).flatMap((m) => m.clientURLs ?? []).sort(), [...both].sort());
      // Read from the mirror, which holds the prefix: no upstream call made for it.
      const scraped = await (await fetch(`${urlOf(a)}/metrics`)).text();
      assert.ok(!scraped.includes('reason="tier-members"'), 'MemberList read the mirror, not etcd');

      const listed = await etcdctl(a.address, ['member', 'list']);
      assert.equal(listed.code, 0, listed.stderr);
      for (const url of both) assert.ok(listed.stdout.includes(url), `etcdctl member list through A shows ${url}:\n${listed.stdout}`);
      assert.ok(!listed.stdout.includes(etcd.clientUrl), 'the etcd member is not listed as a proxy of the tier');

      const bPort = Number(b.address.split(':')[1]);
      b.child.kill('SIGKILL');
      await b.exited;
      await b.stop(); // its data dir: the restarted B gets a new one
      await until(`B gone from the list through A once its ${TTL_SECONDS}s lease expired`, async () => sameList(await listedUrls(a.address), [urlOf(a)]), 20_000, 100);

      b = await startProxyProcess([etcd.clientUrl], TIER_ARGS, { port: bPort });
      await until('B listed again through A after its restart', async () => sameList(await listedUrls(a.address), both));
      await until('and through B', async () => sameList(await listedUrls(b.address), both));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('an edge proxy given one regional of the tier follows the member list to every regional', async () => {
    const a = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    const b = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    const edge = await startTestProxy([urlOf(a)], ['--sync-interval', '200ms']);
    try {
      const dialled = async (): Promise<string[]> => (await edge.metrics.upstreamMemberUp.get()).values.map((v) => String(v.labels.member)).sort();
      await until('the edge dials A and B', async () => sameList(await dialled(), [urlOf(a), urlOf(b)]));
    } finally {
      await Promise.all([edge.stop(), a.stop(), b.stop()]);
    }
  });

  it('a proxy stopped gracefully leaves the list at once (its lease is revoked)', async () => {
    const a = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    const b = await startProxyProcess([etcd.clientUrl], [...TIER_ARGS.slice(0, 2), '--resolver-ttl', '60']);
    try {
      await until('A and B listed', async () => sameList(await listedUrls(a.address), [urlOf(a), urlOf(b)]));
      await b.stop();
      // Far sooner than B's 60 s lease would expire.
      await until('B gone at once', async () => sameList(await listedUrls(a.address), [urlOf(a)]), 5_000, 50);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('keeps its lease alive, and registers again when it is lost: revoked in etcd, or expired during an etcd outage', async () => {
    // etcd reports a lease's remaining TTL in whole seconds, truncated: with 5 s renewed every 1.7 s it reads 4, 3, then 4 again.
    const a = await startProxyProcess([etcd.clientUrl], [...TIER_ARGS.slice(0, 2), '--resolver-ttl', '5']);
    try {
      const first = await untilValue('the registration', async () => (await registered(etcd))[0]);
      const clients = rawClients(etcd.clientAddress);
      try {
        // Kept alive: the same lease's remaining TTL goes up again (without renewals it only falls until the lease expires).
        let lastTtl = Number.POSITIVE_INFINITY;
        await until('the lease renewed', async () => {
          const { error, response } = await call<{ TTL?: string }>(clients.lease, 'LeaseTimeToLive', { ID: first.lease }, { deadlineMs: 3_000 });
          assert.equal(error, null, error?.details);
          const ttl = Number(response?.TTL ?? -1);
          const renewed = ttl > lastTtl;
          lastTtl = ttl;
          return renewed;
        }, 20_000, 100);
        const revoked = await call(clients.lease, 'LeaseRevoke', { ID: first.lease }, { deadlineMs: 3_000 });
        assert.equal(revoked.error, null, revoked.error?.details);
      } finally {
        clients.close();
      }
      const second = await untilValue('the registration', async () => (await registered(etcd)).find((kv) => kv.lease !== first.lease));
      assert.equal(second.key.toString(), first.key.toString());

      // etcd away for longer than the TTL: the proxy takes its lease for lost, and registers again once etcd answers.
      etcd.signal('SIGKILL');
      await until('etcd gone', () => !etcd.running());
      // The revoke above was the first loss; the second is the outage's (no renewal answered within the TTL).
      const losses = (): number => a.stderr().split('tier registration: lease lost').length - 1;
      await until('the proxy to take its lease for lost during the outage', () => losses() >= 2, 20_000, 100);
      await etcd.restart();
      const third = await untilValue('the registration', async () => (await registered(etcd)).find((kv) => kv.lease !== first.lease && kv.lease !== second.lease));
      assert.equal(third.key.toString(), first.key.toString());
      await until('MemberList through A lists A', async () => sameList(await listedUrls(a.address), [urlOf(a)]));
    } finally {
      await a.stop();
    }
  });

  it('skips registrations that do not parse, and lists each address once', async () => {
    const a = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    const clients = rawClients(etcd.clientAddress);
    try {
      const put = async (key: string, value: string | Buffer): Promise<void> => {
        const { error } = await call(clients.kv, 'Put', { key: Buffer.from(`${PREFIX}/${key}`), value: Buffer.from(value) }, { deadlineMs: 3_000 });
        assert.equal(error, null, error?.details);
      };
      await put('garbage', 'not json');
      await put('array', '[1,2]');
      await put('no-addr', JSON.stringify({ Op: 0, Metadata: '{"name":"x"}' }));
      await put('bad-addr', JSON.stringify({ Op: 0, Addr: 'javascript:alert(1)' }));
      await put('deleted-op', JSON.stringify({ Op: 1, Addr: 'http://10.9.9.9:1' }));
      await put('huge', JSON.stringify({ Op: 0, Addr: 'http://10.8.8.8:1', Metadata: 'x'.repeat(8192) }));
      await put('dup', JSON.stringify({ Op: 0, Addr: urlOf(a), Metadata: '{"name":"dup"}' }));
      await put('grpc-proxy-style', JSON.stringify({ Op: 0, Addr: '10.7.7.7:23790', Metadata: '{"name":"regional-7"}' }));
      await until('A, and the grpc-proxy-style entry, listed; nothing else', async () => sameList(await listedUrls(a.address), [urlOf(a), '10.7.7.7:23790']));
      const named = (await memberList(a.address)).find((m) => m.clientURLs?.[0] === '10.7.7.7:23790');
      assert.equal(named?.name, 'regional-7');
    } finally {
      const { error } = await call(clients.kv, 'DeleteRange', { key: Buffer.from(`${PREFIX}/`), range_end: Buffer.from(`${PREFIX}0`) }, { deadlineMs: 3_000 });
      clients.close();
      await a.stop();
      assert.equal(error, null);
    }
  });

  it('lists the tier from etcd when the mirror does not hold the prefix (one shared Range a second, as the proxy)', async () => {
    const a = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    const c = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', '/apisix/', ...TIER_ARGS]);
    try {
      await until('MemberList through C lists A and C', async () => sameList(await listedUrls(c.address), [urlOf(a), c.url]));
      const reads = (await c.metrics.upstreamCalls.get()).values.filter((v) => v.labels.reason === 'tier-members').reduce((sum, v) => sum + v.value, 0);
      assert.ok(reads >= 1, 'read from etcd, not from the mirror');
      // Twenty MemberLists, ten at once and ten one after another, share one Range (two if a second ends among them).
      const before = reads;
      await Promise.all(Array.from({ length: 10 }, () => listedUrls(c.address)));
      const clients = rawClients(c.address);
      try {
        for (let i = 0; i < 10; i++) assert.equal((await call(clients.cluster, 'MemberList', {}, { deadlineMs: 3_000 })).error, null);
      } finally {
        clients.close();
      }
      const after = (await c.metrics.upstreamCalls.get()).values.filter((v) => v.labels.reason === 'tier-members').reduce((sum, v) => sum + v.value, 0);
      assert.ok(after - before <= 2, `20 MemberLists made ${after - before} Ranges`);
    } finally {
      await Promise.all([a.stop(), c.stop()]);
    }
  });

  it('with --workers, one registration (one lease) for the whole proxy, and MemberList through any worker lists it', async () => {
    // Leases of the tests before (a killed proxy's) expire first, so that every lease counted below is this proxy's.
    await until('no lease left in etcd', async () => (await leaseCount(etcd)) === 0);
    const w = await startProxyProcess([etcd.clientUrl], ['--workers', '2', ...TIER_ARGS]);
    try {
      await until('MemberList through the workers lists the proxy once', async () => sameList(await listedUrls(w.address), [urlOf(w)]));
      // Both workers serve: a registration made by each (as each serves its port) would show as a lease each by now.
      await until('both workers serving', () => w.stderr().split('etcd-cache-proxy serving').length - 1 >= 2);
      assert.equal(await leaseCount(etcd), 1, 'one lease: the process that keeps the mirror registered, the workers did not');
      assert.equal((await registered(etcd)).length, 1);
    } finally {
      await w.stop();
    }
  });

  it('without --resolver-prefix, MemberList is as before: the members, each with the proxy as its client URL', async () => {
    const tier = await startProxyProcess([etcd.clientUrl], TIER_ARGS);
    const plain = await startTestProxy([etcd.clientUrl]);
    try {
      await until('the tier proxy registered', async () => (await registered(etcd)).length === 1);
      const members = await memberList(plain.address);
      assert.equal(members.length, 1);
      assert.deepEqual(members[0]?.clientURLs, [plain.url]);
      assert.equal(members[0]?.name, 'default');
      assert.ok((members[0]?.peerURLs ?? []).includes(etcd.peerUrl));
    } finally {
      await Promise.all([tier.stop(), plain.stop()]);
    }
  });
});

describe('tiers with etcd auth on: the proxy registers and lists as its own user (--user)', () => {
  let etcd: EtcdServer;
  const USER = { name: 'tier-proxy', password: 'tier-pw', roles: ['tier'] };
  before(async () => {
    etcd = await startEtcd();
    await enableAuth(etcd.clientAddress, [{ name: 'tier', permissions: [{ key: `${PREFIX}/`, rangeEnd: `${PREFIX}0`, type: 'READWRITE' }] }], [USER]);
  });
  after(async () => {
    await etcd?.stop();
  });

  it('a user that may write under the prefix registers; MemberList lists both proxies', async () => {
    const args = ['--user', `${USER.name}:${USER.password}`, ...TIER_ARGS];
    const a = await startProxyProcess([etcd.clientUrl], args);
    const b = await startProxyProcess([etcd.clientUrl], args);
    try {
      await until('MemberList through A lists A and B', async () => sameList(await listedUrls(a.address), [urlOf(a), urlOf(b)]));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
