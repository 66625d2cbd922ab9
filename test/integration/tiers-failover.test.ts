// Integration (real etcd, two regional proxies as the CLI, one edge proxy in
// front of both): a proxy's Cluster and Maintenance answers say it is one;
// the edge keeps both regionals through its member-list refreshes (a proxy
// upstream lists only itself); when the regional it uses is SIGKILLed, and
// again the other once the first is back, writes, reads, a watch and a lease
// keep-alive through the edge go on through the other regional within the
// upstream timeout, the watch with exactly etcd's history and the edge's
// mirror watch moved once, without a new list. Two proxies pointed at each
// other are refused with an error log naming the cycle.
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { after, before, describe, it, type TestContext } from 'node:test';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { KeepAliveStream } from '../support/keepalive-stream';
import { startProxyProcess, startTestProxy, type ProxyProcess, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';
import { WatchClient, eventsOf, type WireEvent } from '../support/watch-client';
import pino from 'pino';
import { parseEndpoint } from '../../src/etcd/endpoint';
import { PROXY_HEADER } from '../../src/etcd/metadata';
import { fetchMemberList } from '../../src/upstream/member-list';
import { createUpstreamPool, type UpstreamMember } from '../../src/upstream/pool';

const b = (s: string): Buffer => Buffer.from(s);
const UPSTREAM_TIMEOUT_MS = 3_000;
const SYNC_INTERVAL_MS = 300;
/** A regional's downstream watches served from its mirror: the edge's mirror watch is the only one. */
const MIRROR_WATCHERS = 'etcd_cache_proxy_watchers{source="mirror"}';
/** A regional's downstream LeaseKeepAlive streams: the edge's shared one is the only one. */
const KEEPALIVE_STREAMS = 'etcd_cache_proxy_grpc_streams_open{service="Lease",method="LeaseKeepAlive"}';

/** The client URLs the edge dials, from its per-member gauge. */
async function edgeMembers(edge: TestProxy): Promise<string[]> {
  return (await edge.metrics.upstreamMemberUp.get()).values.map((v) => String(v.labels.member)).sort();
}

async function refreshesOk(edge: TestProxy): Promise<number> {
  return (await edge.metrics.memberListRefreshes.get()).values.find((v) => v.labels.result === 'ok')?.value ?? 0;
}

/** One sample of a proxy process, read from its /metrics (0 when it does not answer). */
async function processGauge(proxy: ProxyProcess, sample: string): Promise<number> {
  try {
    const text = await (await fetch(`http://${proxy.address}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
    const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
    return Number(line?.split(' ')[1] ?? 0);
  } catch {
    return 0;
  }
}

/** `type key=value@mod_revision`, for comparing watch events with etcd's. */
const render = (events: readonly WireEvent[]): string[] =>
  events.map((e) => `${e.type ?? 'PUT'} ${e.kv?.key?.toString() ?? ''}=${e.kv?.value?.toString() ?? ''}@${e.kv?.mod_revision ?? ''}`);

async function put(clients: RawClients, key: string, value: string, lease?: string): Promise<number> {
  const answer = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b(key), value: b(value), ...(lease === undefined ? {} : { lease }) }, { deadlineMs: 5_000 });
  assert.equal(answer.error, null, answer.error?.details);
  return Number(answer.response?.header?.revision);
}

describe('tiers: an edge proxy in front of two regional proxies', () => {
  let etcd: EtcdServer;
  let regionals: ProxyProcess[] = [];
  let edge: TestProxy;
  let edgeClients: RawClients;
  let direct: RawClients;

  before(async () => {
    etcd = await startEtcd();
    regionals = await Promise.all([0, 1].map(() => startProxyProcess([etcd.clientUrl], ['--upstream-timeout', `${UPSTREAM_TIMEOUT_MS}ms`])));
    const urls = regionals.map((r) => `http://${r.address}`);
    edge = await startTestProxy(urls, ['--sync-interval', `${SYNC_INTERVAL_MS}ms`, '--upstream-timeout', `${UPSTREAM_TIMEOUT_MS}ms`]);
    await edge.mirrored();
    edgeClients = rawClients(edge.address);
    direct = rawClients(etcd.clientAddress);
  });
  after(async () => {
    watch?.close();
    keepAlive?.cancel();
    edgeClients?.close();
    direct?.close();
    await edge?.stop();
    await Promise.all(regionals.map((r) => r.stop()));
    await etcd?.stop();
  });

  it('says in its answers that it is a proxy; etcd does not', async () => {
    const regional = rawClients((regionals[0] as ProxyProcess).address);
    try {
      for (const method of ['MemberList', 'Status'] as const) {
        const client = method === 'Status' ? regional.maintenance : regional.cluster;
        const answer = await call(client, method, {}, { deadlineMs: 5_000 });
        assert.equal(answer.error, null, answer.error?.details);
        assert.ok(String(answer.headers?.get(PROXY_HEADER)[0] ?? '') !== '', `${method} through a proxy carries ${PROXY_HEADER}`);
        const fromEtcd = await call(method === 'Status' ? direct.maintenance : direct.cluster, method, {}, { deadlineMs: 5_000 });
        assert.deepEqual(fromEtcd.headers?.get(PROXY_HEADER), [], `${method} from etcd carries no ${PROXY_HEADER}`);
      }
      // An error relayed in a trailers-only answer carries it with the status.
      const refused = await call(regional.maintenance, 'MoveLeader', { targetID: '0' }, { deadlineMs: 5_000 });
      assert.notEqual(refused.error, null);
      assert.ok(String(refused.error?.metadata.get(PROXY_HEADER)[0] ?? '') !== '', `${refused.error?.details}: the error carries ${PROXY_HEADER}`);
      const fromEtcd = await call(direct.maintenance, 'MoveLeader', { targetID: '0' }, { deadlineMs: 5_000 });
      assert.equal(fromEtcd.error?.details, refused.error?.details, "etcd's own error, relayed");
      assert.deepEqual(fromEtcd.error?.metadata.get(PROXY_HEADER), []);
    } finally {
      regional.close();
    }
    // A pool learns it from the member-list refresh's answer, per member.
    for (const [url, kind] of [
      [`http://${(regionals[0] as ProxyProcess).address}`, 'proxy'],
      [etcd.clientUrl, 'etcd'],
    ] as const) {
      const pool = createUpstreamPool([parseEndpoint(url)], pino({ level: 'silent' }));
      try {
        const listed = await fetchMemberList(pool, pino({ level: 'silent' }));
        assert.equal(listed.answeredBy, kind, url);
        assert.equal(pool.kind(pool.members()[0] as UpstreamMember), kind, url);
      } finally {
        await pool.close();
      }
    }
  });

  it('keeps both regionals through member-list refreshes', async () => {
    const configured = regionals.map((r) => `http://${r.address}`).sort();
    const seen = await refreshesOk(edge);
    await until('three member-list refreshes of the edge', async () => (await refreshesOk(edge)) >= seen + 3);
    assert.deepEqual(await edgeMembers(edge), configured);
  });

  /** Held across both kills: one watch and one keep-alive stream through the edge, as a gateway holds them. */
  let watch: WatchClient | undefined;
  let keepAlive: KeepAliveStream | undefined;
  let lease = '';
  /** Where the watch through the edge started: its events are compared with etcd's from there. */
  let start = 0;

  const mirrorWatchFailovers = async (): Promise<number> => (await edge.metrics.upstreamFailovers.get()).values.find((v) => v.labels.kind === 'mirror_watch')?.value ?? 0;
  const relists = async (): Promise<number> => (await edge.metrics.mirrorRelists.get()).values.reduce((sum, v) => sum + v.value, 0);

  /**
   * SIGKILLs `victim`, which holds the edge's mirror watch, then checks that
   * through the edge writes go on within the upstream timeout, reads see them,
   * the keep-alive stream renews, the watch holds exactly etcd's history, and
   * the mirror's watch moved once to `survivor`, without a new list.
   */
  async function killAndGoOn(t: TestContext, victim: ProxyProcess, survivor: ProxyProcess, phase: string): Promise<void> {
    assert.ok(watch !== undefined && keepAlive !== undefined);
    for (let i = 0; i < 3; i += 1) await put(edgeClients, `tier/${phase}/k${i}`, `before-${i}`, i === 0 ? lease : undefined);
    const failoversBefore = await mirrorWatchFailovers();
    const relistsBefore = await relists();
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');

    // The first write after the kill that etcd takes, through the edge, within the upstream timeout.
    let attempt = 0;
    const refusals: string[] = [];
    await untilValue(
      'a write through the edge after the kill',
      async () => {
        attempt += 1;
        const answer = await call(edgeClients.kv, 'Put', { key: b(`tier/${phase}/after`), value: b(`a${attempt}`) }, { deadlineMs: 2_000 });
        if (answer.error !== null) refusals.push(`${Date.now() - killedAt} ms: ${status[answer.error.code]} ${answer.error.details}`);
        return answer.error === null ? true : undefined;
      },
      UPSTREAM_TIMEOUT_MS + 2_000,
      50,
    );
    const writableAfterMs = Date.now() - killedAt;
    t.diagnostic(`${phase}: a write through the edge went through ${writableAfterMs} ms after the kill (${attempt} attempts)${refusals.length === 0 ? '' : `; refused: ${refusals.join('; ')}`}`);
    assert.ok(writableAfterMs <= UPSTREAM_TIMEOUT_MS + 1_000, `writes went on ${writableAfterMs} ms after the kill`);
    for (let i = 0; i < 3; i += 1) await put(edgeClients, `tier/${phase}/k${i}`, `after-${i}`);
    const last = await put(edgeClients, `tier/${phase}/last`, 'z');

    // Linearizable and serializable reads through the edge see the last write.
    for (const serializable of [false, true]) {
      const got = await call<{ kvs?: { value: Buffer }[] }>(edgeClients.kv, 'Range', { key: b(`tier/${phase}/last`), serializable }, { deadlineMs: 5_000 });
      assert.equal(got.error, null, got.error?.details);
      assert.equal(got.response?.kvs?.[0]?.value.toString(), 'z');
    }

    // The keep-alive stream through the edge goes on, renewed through the other regional.
    const renewed = await keepAlive.ask(lease);
    assert.ok(Number(renewed.TTL) > 0, `renewed after the kill: ${JSON.stringify(renewed)}`);
    assert.equal(keepAlive.ended, null);

    // The watch through the edge holds exactly etcd's history since it started: no gap, no repeat.
    const truth = new WatchClient(etcd.clientAddress);
    try {
      await truth.createAll([{ key: b('tier/'), range_end: b('tier0'), start_revision: start }]);
      await truth.until('etcd history up to the last write', () => eventsOf(truth.responses).some((e) => Number(e.kv?.mod_revision) >= last));
      const edgeWatch = watch;
      await edgeWatch.until('the edge watch up to the last write', () => eventsOf(edgeWatch.responses).some((e) => Number(e.kv?.mod_revision) >= last), 10_000);
      assert.deepEqual(render(eventsOf(edgeWatch.responses)), render(eventsOf(truth.responses)));
    } finally {
      truth.close();
    }
    assert.equal(watch.ended, null, 'the watch stream stays open');
    // The edge's mirror watch lives on the survivor now, resumed once from where it was (no new list).
    await until('the mirror watch on the surviving regional', async () => (await processGauge(survivor, MIRROR_WATCHERS)) > 0);
    assert.equal((await mirrorWatchFailovers()) - failoversBefore, 1, 'the mirror watch moved once');
    assert.equal((await relists()) - relistsBefore, 0, 'the mirror resumed its watch, without a new list');
    // And the edge still holds both regionals, the dead one included (it may come back).
    assert.deepEqual(await edgeMembers(edge), regionals.map((r) => `http://${r.address}`).sort());
  }

  it('goes on through the other regional when the one holding its mirror watch is SIGKILLed: writes, reads, a watch (exactly etcd history), a keep-alive', async (t) => {
    // After a member-list refresh (a proxy upstream lists only itself), as an edge runs past its first sync interval.
    const seen = await refreshesOk(edge);
    await until('a member-list refresh of the edge', async () => (await refreshesOk(edge)) >= seen + 1);
    const used = await untilValue('the regional holding the edge mirror watch', async () => {
      const counts = await Promise.all(regionals.map((r) => processGauge(r, MIRROR_WATCHERS)));
      const holding = regionals.filter((_, i) => (counts[i] ?? 0) > 0);
      return holding.length === 1 ? holding[0] : undefined;
    });
    start = (await put(edgeClients, 'tier/before', 'b0')) + 1;
    watch = new WatchClient(edge.address);
    await watch.createAll([{ key: b('tier/'), range_end: b('tier0'), start_revision: start }]);
    keepAlive = new KeepAliveStream(edgeClients.lease);
    const granted = await call<{ ID: string }>(edgeClients.lease, 'LeaseGrant', { TTL: '30' }, { deadlineMs: 5_000 });
    assert.equal(granted.error, null, granted.error?.details);
    lease = granted.response?.ID ?? '';
    assert.ok(Number((await keepAlive.ask(lease)).TTL) > 0);
    await killAndGoOn(t, used, regionals.find((r) => r !== used) as ProxyProcess, 'first');
  });

  it('and again once the killed regional is back: SIGKILL of the other, which now holds both the mirror watch and the keep-alive stream', async (t) => {
    const deadIndex = regionals.findIndex((r) => r.child.signalCode === 'SIGKILL');
    const dead = regionals[deadIndex];
    const holder = regionals.find((r) => r !== dead);
    assert.ok(dead !== undefined && holder !== undefined, 'the first test killed one regional');
    await dead.stop();
    const restarted = await startProxyProcess([etcd.clientUrl], ['--upstream-timeout', `${UPSTREAM_TIMEOUT_MS}ms`], { port: Number(dead.address.split(':')[1]) });
    regionals[deadIndex] = restarted;
    // Back, with all of etcd mirrored. The edge need not have probed it yet: a call refused by a dead member goes to the next.
    const now = await put(direct, 'tier/restarted', 'r');
    await until('the restarted regional mirrored', async () => (await processGauge(restarted, 'etcd_cache_proxy_mirror_revision')) >= now);
    // Only the survivor was there after the first kill: the edge's mirror watch and its keep-alive stream are on it.
    assert.ok((await processGauge(holder, MIRROR_WATCHERS)) > 0, 'the mirror watch is on the survivor');
    assert.ok((await processGauge(holder, KEEPALIVE_STREAMS)) > 0, 'the keep-alive stream is on the survivor');
    await killAndGoOn(t, holder, restarted, 'second');
  });
});

describe('tiers: the loop guard', () => {
  it('refuses two proxies pointed at each other, with an error log naming the cycle, and answers at once', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const args = ['--upstream-timeout', '500ms', '--sync-interval', `${SYNC_INTERVAL_MS}ms`, '--log-level', 'info'];
    const a = await startProxyProcess([`http://127.0.0.1:${portB}`], args, { port: portA });
    const bProxy = await startProxyProcess([`http://127.0.0.1:${portA}`], args, { port: portB });
    try {
      const cycleLogged = (proxy: ProxyProcess): boolean => proxy.stderr().split('\n').some((line) => line.includes('"level":"error"') && line.includes('cycle'));
      await until(() => `a cycle error log:\n${a.stderr()}\n${bProxy.stderr()}`, () => cycleLogged(a) || cycleLogged(bProxy), 10_000);
      for (const proxy of [a, bProxy]) {
        const clients = rawClients(proxy.address);
        try {
          const started = Date.now();
          const got = await call(clients.kv, 'Range', { key: b('loop'), serializable: false }, { deadlineMs: 10_000 });
          assert.notEqual(got.error, null);
          assert.ok(Date.now() - started < 5_000, 'answered, not circled until the deadline');
        } finally {
          clients.close();
        }
      }
    } finally {
      await Promise.all([a.stop(), bProxy.stop()]);
    }
  });
});
