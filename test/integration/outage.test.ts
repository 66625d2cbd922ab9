// Integration (real etcd, broken for real): the mirror keeps reads alive
// when etcd is killed or frozen, across a proxy restart, and writes are
// refused at once instead of hanging.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients, type UnaryOutcome } from '../support/raw-client';
import { untilValue as until } from '../support/until';

const UPSTREAM_TIMEOUT = ['--upstream-timeout', '1s'];
/** The mirror's longest wait between attempts to reach etcd, as the histogram's bucket label says it. */
const MAX_RECONNECT_DELAY_S = '5';
const key = (s: string): Buffer => Buffer.from(s);

interface RangeReply {
  header: { revision: string };
  kvs?: { key: Buffer; value: Buffer }[];
  count?: string;
}

const values = (outcome: UnaryOutcome<RangeReply>): Record<string, string> =>
  Object.fromEntries((outcome.response?.kvs ?? []).map((kv) => [kv.key.toString(), kv.value.toString()]));
const isStale = (outcome: UnaryOutcome<unknown>): boolean => outcome.headers?.get('x-etcd-cache-proxy-stale')[0] === 'true';

/** Waits until the proxy refuses writes, i.e. it has declared the upstream lost. */
async function untilLost(clients: RawClients, proxy?: TestProxy): Promise<void> {
  let last = 'no Put answered yet';
  let upstreamUp = 'unknown';
  await until(
    () => `the proxy to declare the upstream lost (last Put: ${last}; etcd_cache_proxy_upstream_up ${upstreamUp})`,
    async () => {
      const put = await call(clients.kv, 'Put', { key: key('probe'), value: key('x') }, { deadlineMs: 500 });
      last = put.error === null ? 'answered OK' : `${put.error.code} ${put.error.details}`;
      if (proxy !== undefined) upstreamUp = String((await proxy.metrics.upstreamUp.get()).values[0]?.value);
      return put.error?.details === 'etcd-cache-proxy: upstream cluster unreachable, writes rejected' ? true : undefined;
    },
  );
}

describe('reads survive etcd being killed, and a proxy restart during the outage', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;
  let dataDir: string;

  before(async () => {
    etcd = await startEtcd();
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-outage-'));
    proxy = await startTestProxy([etcd.clientUrl], UPSTREAM_TIMEOUT, { dataDir });
    clients = rawClients(proxy.address);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await etcd?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves the last data, marked stale, and refuses writes fast', async () => {
    for (const [k, v] of [['/apisix/routes/1', 'r1'], ['/apisix/routes/2', 'r2'], ['/apisix/upstreams/1', 'u1']]) {
      const put = await call(clients.kv, 'Put', { key: key(k ?? ''), value: key(v ?? '') });
      assert.equal(put.error, null);
    }
    await proxy.mirrored(4);
    const fresh = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/'), range_end: key('/apisix0') });
    assert.equal(isStale(fresh), false);
    const revision = fresh.response?.header.revision;

    etcd.signal('SIGKILL');
    await untilLost(clients);

    const stale = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/'), range_end: key('/apisix0') });
    assert.equal(stale.error, null, stale.error?.details);
    assert.equal(isStale(stale), true);
    assert.deepEqual(values(stale), { '/apisix/routes/1': 'r1', '/apisix/routes/2': 'r2', '/apisix/upstreams/1': 'u1' });
    assert.equal(stale.response?.header.revision, revision);
    // the past, from the event log; the future, refused as etcd would
    const past = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/'), range_end: key('/apisix0'), revision: String(Number(revision) - 1) });
    assert.equal(past.error, null, past.error?.details);
    assert.deepEqual(values(past), { '/apisix/routes/1': 'r1', '/apisix/routes/2': 'r2' });
    const future = await call(clients.kv, 'Range', { key: key('/apisix/'), revision: String(Number(revision) + 100) });
    assert.equal(future.error?.code, status.OUT_OF_RANGE);
    assert.equal(future.error?.details, 'etcdserver: mvcc: required revision is a future revision');

    const started = Date.now();
    const put = await call(clients.kv, 'Put', { key: key('/apisix/routes/3'), value: key('r3') });
    const tookMs = Date.now() - started;
    assert.equal(put.error?.code, status.UNAVAILABLE);
    assert.equal(put.error?.details, 'etcd-cache-proxy: upstream cluster unreachable, writes rejected');
    assert.ok(tookMs < 100, `write refused after ${tookMs} ms`);
    const lease = await call(clients.lease, 'LeaseGrant', { TTL: '10' });
    assert.equal(lease.error?.code, status.UNAVAILABLE);
  });

  it("acknowledges a gateway's start-up marker Put of a value the mirror already holds", async () => {
    const marker = await call<{ header: { revision: string }; prev_kv?: { value: Buffer } }>(clients.kv, 'Put', {
      key: key('/apisix/routes/1'),
      value: key('r1'),
      prev_kv: true,
    });
    assert.equal(marker.error, null, marker.error?.details);
    assert.equal(isStale(marker), true);
    assert.equal(marker.response?.prev_kv?.value.toString(), 'r1');
    for (const changed of [
      { key: key('/apisix/routes/1'), value: key('something else') },
      { key: key('/apisix/routes/1'), value: key('r1'), lease: '1234' },
      { key: key('/apisix/new'), value: key('r1') },
    ]) {
      const refused = await call(clients.kv, 'Put', changed);
      assert.equal(refused.error?.code, status.UNAVAILABLE, JSON.stringify(changed));
    }
  });

  it('still answers after the proxy restarts while etcd is down', async () => {
    await proxy.stop();
    proxy = await startTestProxy([etcd.clientUrl], UPSTREAM_TIMEOUT, { dataDir });
    clients.close();
    clients = rawClients(proxy.address);
    // At once, before the proxy has even decided the upstream is lost:
    const reply = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/routes/1'), serializable: true });
    assert.equal(reply.error, null, reply.error?.details);
    assert.deepEqual(values(reply), { '/apisix/routes/1': 'r1' });
    const linearizable = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/'), range_end: key('/apisix0') });
    assert.equal(linearizable.error, null, linearizable.error?.details);
    assert.equal(isStale(linearizable), true);
    assert.equal(Object.keys(values(linearizable)).length, 3);
  });

  it('reconnects by itself within its capped, jittered delay when etcd returns, resuming without a list', async () => {
    // While etcd was down the proxy waited between attempts: random, growing, and never past the cap.
    const waits = async (): Promise<{ attempts: number; withinCap: number }> => {
      const delays = (await proxy.metrics.mirrorReconnectDelay.get()).values;
      return {
        attempts: delays.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0,
        withinCap: delays.find((v) => v.metricName?.endsWith('_bucket') && String(v.labels.le) === MAX_RECONNECT_DELAY_S)?.value ?? -1,
      };
    };
    // Seven waits: past the point where the growing bound (250 ms doubling) would pass the cap.
    const { attempts, withinCap } = await until(
      'seven attempts to reach etcd while it is down',
      async () => {
        const seen = await waits();
        return seen.attempts >= 7 ? seen : undefined;
      },
      30_000,
    );
    assert.equal(withinCap, attempts, `every wait within ${MAX_RECONNECT_DELAY_S} s`);

    await etcd.restart();
    const back = Date.now();
    const direct = rawClients(etcd.clientAddress);
    try {
      await call(direct.kv, 'Put', { key: key('/apisix/routes/2'), value: key('r2-changed-directly') });
      await call(direct.kv, 'DeleteRange', { key: key('/apisix/upstreams/1') });
    } finally {
      direct.close();
    }
    // Nothing goes through the proxy meanwhile (a write would make it reconnect at once): it comes back on its own.
    await until('the mirror to take the changes made on etcd', async () => {
      const reply = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/'), range_end: key('/apisix0'), serializable: true });
      return values(reply)['/apisix/routes/2'] === 'r2-changed-directly' && !isStale(reply) ? true : undefined;
    });
    const tookMs = Date.now() - back;
    // The cap, the jitter on the way back and noticing etcd is back, with room for a loaded machine.
    assert.ok(tookMs < (Number(MAX_RECONNECT_DELAY_S) + 2 + 1 + 5) * 1000, `mirror back ${tookMs} ms after etcd`);
    assert.equal((await proxy.metrics.mirrorRelists.get()).values[0]?.value ?? 0, 0, 'resumed at its revision + 1, no list');
  });

  it('catches up when etcd returns: writes work and changes made meanwhile arrive', async () => {
    const put = await until('writes to be accepted again', async () => {
      const outcome = await call(clients.kv, 'Put', { key: key('/apisix/routes/3'), value: key('r3') });
      return outcome.error === null ? outcome : undefined;
    });
    assert.equal(put.error, null);
    // read your writes: the next read through the proxy sees everything, fresh
    const reply = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/'), range_end: key('/apisix0') });
    assert.equal(isStale(reply), false);
    assert.deepEqual(values(reply), { '/apisix/routes/1': 'r1', '/apisix/routes/2': 'r2-changed-directly', '/apisix/routes/3': 'r3' });
  });
});

describe('a frozen etcd (SIGSTOP) is lost within the upstream timeout', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl], UPSTREAM_TIMEOUT);
    clients = rawClients(proxy.address);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('serves stale reads and refuses writes while frozen, and recovers on SIGCONT', async () => {
    assert.equal((await call(clients.kv, 'Put', { key: key('k'), value: key('v1') })).error, null);
    await proxy.mirrored(2);
    await etcd.freeze();
    try {
      await untilLost(clients, proxy);
      const reply = await call<RangeReply>(clients.kv, 'Range', { key: key('k') }, { deadlineMs: 2_000 });
      assert.equal(reply.error, null, reply.error?.details);
      assert.equal(isStale(reply), true);
      assert.deepEqual(values(reply), { k: 'v1' });
    } finally {
      etcd.signal('SIGCONT');
    }
    await until('writes to be accepted again', async () => {
      const outcome = await call(clients.kv, 'Put', { key: key('k'), value: key('v2') });
      return outcome.error === null ? true : undefined;
    });
    const reply = await call<RangeReply>(clients.kv, 'Range', { key: key('k') });
    assert.deepEqual(values(reply), { k: 'v2' });
    assert.equal(isStale(reply), false);
  });
});

describe('modes that refuse', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('read-only mode refuses every write with UNIMPLEMENTED and still reads', async () => {
    const proxy = await startTestProxy([etcd.clientUrl], ['--mode', 'readonly']);
    const clients = rawClients(proxy.address);
    try {
      for (const [client, method, request] of [
        [clients.kv, 'Put', { key: key('a'), value: key('b') }],
        [clients.kv, 'DeleteRange', { key: key('a') }],
        [clients.kv, 'Txn', { success: [{ request_put: { key: key('a'), value: key('b') } }] }],
        [clients.lease, 'LeaseGrant', { TTL: '5' }],
      ] as const) {
        const outcome = await call(client, method, request);
        assert.equal(outcome.error?.code, status.UNIMPLEMENTED, method);
        assert.equal(outcome.error?.details, 'etcd-cache-proxy: read-only proxy rejects writes');
      }
      const read = await call(clients.kv, 'Range', { key: key('a') });
      assert.equal(read.error, null);
      const metrics = await proxy.metrics.registry.metrics();
      assert.match(metrics, /etcd_cache_proxy_writes_rejected_total\{reason="readonly"\} 4/);
    } finally {
      clients.close();
      await proxy.stop();
    }
  });

  it('--stale-reads=deny refuses reads while the upstream is lost', async () => {
    const own = await startEtcd();
    const proxy = await startTestProxy([own.clientUrl], [...UPSTREAM_TIMEOUT, '--stale-reads', 'deny']);
    const clients = rawClients(proxy.address);
    try {
      assert.equal((await call(clients.kv, 'Put', { key: key('a'), value: key('b') })).error, null);
      await proxy.mirrored(2);
      own.signal('SIGKILL');
      await untilLost(clients);
      const read = await call(clients.kv, 'Range', { key: key('a'), serializable: true });
      assert.equal(read.error?.code, status.UNAVAILABLE);
      assert.match(read.error?.details ?? '', /stale reads denied/);
    } finally {
      clients.close();
      await proxy.stop();
      await own.stop();
    }
  });

  it('an empty data dir and no etcd: starts, and refuses reads until the first sync', async () => {
    const own = await startEtcd();
    const endpoint = own.clientUrl;
    await own.stop();
    const proxy = await startTestProxy([endpoint], UPSTREAM_TIMEOUT);
    const clients = rawClients(proxy.address);
    try {
      await untilLost(clients);
      const read = await call(clients.kv, 'Range', { key: key('a') });
      assert.equal(read.error?.code, status.UNAVAILABLE);
      assert.equal(read.error?.details, 'etcd-cache-proxy: upstream cluster unreachable and the mirror has never synced');
    } finally {
      clients.close();
      await proxy.stop();
    }
  });
});
