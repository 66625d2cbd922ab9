// Integration (real etcd): --mirror-prefix mirrors only some prefixes. Reads
// they cover are answered from the mirror exactly as etcd answers them, the
// rest go to etcd; the mirror revision moves with writes between prefixes;
// the mirror outlives etcd; a changed prefix list is never served from the
// old mirror.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { metric } from '../support/metrics';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const key = (s: string): Buffer => Buffer.from(s);
/** etcd: "Total number of events sent by this member" to its watchers. */
const EVENTS_SENT = 'etcd_debugging_mvcc_events_total';
const PREFIXES = ['--mirror-prefix', '/apisix/', '--mirror-prefix', '/other/', '--upstream-timeout', '1s'];

interface RangeReply {
  header: { revision: string };
  kvs?: { key: Buffer; value: Buffer; create_revision: string; mod_revision: string; version: string }[];
  count?: string;
  more?: boolean;
}

async function rangesBySource(proxy: TestProxy): Promise<Record<string, number>> {
  const counted: Record<string, number> = {};
  for (const sample of (await proxy.metrics.grpcRequests.get()).values) {
    if (sample.labels.method !== 'Range') continue;
    const source = String(sample.labels.source);
    counted[source] = (counted[source] ?? 0) + sample.value;
  }
  return counted;
}

async function mirrorRevision(proxy: TestProxy): Promise<number> {
  return (await proxy.metrics.mirrorRevision.get()).values[0]?.value ?? 0;
}

/** Sends one Range and tells which part of the proxy answered it. */
async function rangeVia(proxy: TestProxy, clients: RawClients, request: object): Promise<{ reply: RangeReply | undefined; source: string; error: string | null }> {
  const before = await rangesBySource(proxy);
  const outcome = await call<RangeReply>(clients.kv, 'Range', request);
  const afterwards = await rangesBySource(proxy);
  const source = Object.keys(afterwards).find((s) => (afterwards[s] ?? 0) > (before[s] ?? 0)) ?? 'none';
  return { reply: outcome.response, source, error: outcome.error?.details ?? null };
}

describe('a prefix mirror', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let clients: RawClients;
  let direct: RawClients;
  let dataDir: string;

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    for (const k of ['/apisix/routes/1', '/apisix/routes/2', '/apisix/upstreams/1', '/gap/1', '/other/a', '/zzz/1']) {
      assert.equal((await call(direct.kv, 'Put', { key: key(k), value: key(`v-${k}`) })).error, null);
    }
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-prefix-'));
    proxy = await startTestProxy([etcd.clientUrl], PREFIXES, { dataDir });
    clients = rawClients(proxy.address);
    await proxy.mirrored(7);
  });
  after(async () => {
    clients?.close();
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers covered serializable reads from the mirror as etcd does, and forwards the rest', async () => {
    const covered = [
      { key: key('/apisix/'), range_end: key('/apisix0') },
      { key: key('/apisix/routes/'), range_end: key('/apisix/routes0'), limit: '1' },
      { key: key('/apisix/'), range_end: key('/apisix0'), count_only: true },
      { key: key('/apisix/'), range_end: key('/apisix0'), sort_order: 'DESCEND', sort_target: 'KEY', keys_only: true },
      { key: key('/other/a') },
      { key: key('/apisix/none') },
    ];
    for (const request of covered) {
      const proxied = await rangeVia(proxy, clients, { ...request, serializable: true });
      const fromEtcd = await call<RangeReply>(direct.kv, 'Range', request);
      assert.equal(proxied.source, 'mirror', JSON.stringify(request));
      assert.deepEqual(
        { kvs: proxied.reply?.kvs ?? [], count: proxied.reply?.count, more: proxied.reply?.more },
        { kvs: fromEtcd.response?.kvs ?? [], count: fromEtcd.response?.count, more: fromEtcd.response?.more },
        JSON.stringify(request),
      );
    }
    const uncovered = [
      { key: key('/gap/1') },
      { key: key('/zzz/'), range_end: key('/zzz0') },
      { key: key('/apisix/'), range_end: key('/other0') },
      { key: key('/'), range_end: Buffer.from([0]) },
    ];
    for (const request of uncovered) {
      const proxied = await rangeVia(proxy, clients, { ...request, serializable: true });
      const fromEtcd = await call<RangeReply>(direct.kv, 'Range', request);
      assert.equal(proxied.source, 'upstream', JSON.stringify(request));
      assert.deepEqual(proxied.reply?.kvs ?? [], fromEtcd.response?.kvs ?? []);
    }
    // Without progress responses it can trust (etcd < 3.4.31), a prefix mirror cannot prove it has reached etcd's revision.
    assert.equal((await rangeVia(proxy, clients, { key: key('/apisix/routes/1') })).source, 'upstream');
  });

  it('moves its revision with writes between the prefixes, not with writes outside the watched span', async () => {
    const gap = await call<RangeReply>(clients.kv, 'Put', { key: key('/gap/2'), value: key('g') });
    const gapRevision = Number(gap.response?.header.revision);
    // Read your writes made it wait for this revision, though /gap/ is not kept.
    assert.equal(await mirrorRevision(proxy), gapRevision);
    // etcd's own count of watch events it sent (this etcd has no watcher but the mirror's).
    const sentBefore = await metric(etcd.clientUrl, EVENTS_SENT);
    const outside = await call<RangeReply>(clients.kv, 'Put', { key: key('/zzz/2'), value: key('z') });
    assert.equal(outside.error, null);
    const inside = await call<RangeReply>(clients.kv, 'Put', { key: key('/apisix/routes/3'), value: key('r3') });
    const insideRevision = Number(inside.response?.header.revision);
    assert.equal(insideRevision, Number(outside.response?.header.revision) + 1);
    await proxy.mirrored(insideRevision);
    assert.equal(await mirrorRevision(proxy), insideRevision);
    // etcd counts an event before sending it and sends a watcher's events in revision order: now
    // that the mirror holds the later write, the one past the last prefix is counted if it was sent.
    assert.equal((await metric(etcd.clientUrl, EVENTS_SENT)) - sentBefore, 1, 'a write past the last prefix reached the mirror: only /apisix/routes/3 should have');
    const read = await rangeVia(proxy, clients, { key: key('/apisix/routes/3'), serializable: true });
    assert.equal(read.source, 'mirror');
    assert.equal(read.reply?.kvs?.[0]?.value.toString(), 'r3');
    assert.equal(read.reply?.header.revision, inside.response?.header.revision);
  });

  it('answers covered reads during an outage, marked stale, and refuses the rest', async () => {
    etcd.signal('SIGKILL');
    await until(
      'the proxy to declare the upstream lost (writes refused)',
      async () => {
        const put = await call(clients.kv, 'Put', { key: key('/apisix/probe'), value: key('x') }, { deadlineMs: 500 });
        return put.error?.code === status.UNAVAILABLE && put.error.details.includes('upstream cluster unreachable');
      },
      30_000,
      100,
    );
    const linearizable = await rangeVia(proxy, clients, { key: key('/apisix/'), range_end: key('/apisix0') });
    assert.equal(linearizable.source, 'mirror');
    assert.deepEqual(
      linearizable.reply?.kvs?.map((kv) => kv.key.toString()),
      ['/apisix/routes/1', '/apisix/routes/2', '/apisix/routes/3', '/apisix/upstreams/1'],
    );
    const outside = await rangeVia(proxy, clients, { key: key('/zzz/1'), serializable: true });
    assert.equal(outside.source, 'upstream');
    assert.notEqual(outside.error, null, 'keys the mirror does not hold cannot be answered without etcd');
  });

  it('discards the mirror when restarted with other prefixes, and lists them when etcd returns', async () => {
    await proxy.stop();
    proxy = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', '/apisix/routes/', '--upstream-timeout', '1s'], { dataDir });
    clients.close();
    clients = rawClients(proxy.address);
    const before = await call<RangeReply>(clients.kv, 'Range', { key: key('/apisix/routes/1'), serializable: true }, { deadlineMs: 5_000 });
    assert.notEqual(before.error, null, 'data listed for another prefix set must not be served');
    await etcd.restart();
    direct.close();
    direct = rawClients(etcd.clientAddress);
    await proxy.mirrored(1);
    const read = await rangeVia(proxy, clients, { key: key('/apisix/routes/'), range_end: key('/apisix/routes0'), serializable: true });
    assert.equal(read.source, 'mirror');
    assert.deepEqual(
      read.reply?.kvs?.map((kv) => kv.key.toString()),
      ['/apisix/routes/1', '/apisix/routes/2', '/apisix/routes/3'],
    );
    assert.equal((await rangeVia(proxy, clients, { key: key('/apisix/upstreams/1'), serializable: true })).source, 'upstream');
  });
});
