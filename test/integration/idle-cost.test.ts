// Integration (real etcd, its own metrics): an idle proxy costs etcd almost
// nothing (a fleet multiplies it): no per-second probes while the mirror's
// watch answers its progress requests; and a frozen etcd, or a killed one, is
// still noticed within the upstream timeout.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EtcdServer } from '../support/etcd';
import { etcdAndProxy } from '../support/fixture';
import { call, rawClients } from '../support/raw-client';
import { until } from '../support/until';

/** RPCs etcd has started, by method, from its own grpc-prometheus counters. */
async function rpcsStarted(etcd: EtcdServer): Promise<Map<string, number>> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^grpc_server_started_total\{grpc_method="(\w+)",grpc_service="[\w.]+",grpc_type="\w+"\} (\S+)$/gm)) {
    counts.set(match[1] ?? '', (counts.get(match[1] ?? '') ?? 0) + Number(match[2]));
  }
  return counts;
}

describe('an idle proxy', () => {
  const both = etcdAndProxy(['--upstream-timeout', '3s']);
  /** The proxy's own count of its upstream calls, by reason. */
  const callsByReason = async (): Promise<Map<string, number>> => {
    const reasons = new Map<string, number>();
    for (const { labels, value } of (await both.proxy.metrics.upstreamCalls.get()).values) {
      reasons.set(String(labels.reason), (reasons.get(String(labels.reason)) ?? 0) + value);
    }
    return reasons;
  };

  it('makes next to no RPCs while idle, and still notices a frozen or killed etcd within the upstream timeout', async () => {
    // A write first: with events in the log, whether etcd compacted past them is a question too.
    const writer = rawClients(both.proxy.address);
    const put = await call<{ header: { revision: string } }>(writer.kv, 'Put', { key: Buffer.from('idle/k'), value: Buffer.from('v') });
    assert.equal(put.error, null);
    writer.close();
    // An idle cost is a count over a window of time. It starts once start-up is over: the proxy has made its
    // start-up calls (the member list, the first probe, the mirror's list and watch) and the mirror's watch has
    // delivered the write, so it answers; what the window counts is then what an idle proxy does.
    await both.proxy.mirrored(Number(put.response?.header.revision));
    await until('the start-up calls made', async () => {
      const reasons = await callsByReason();
      return ['member-refresh', 'liveness', 'mirror-list', 'mirror-watch'].every((reason) => (reasons.get(reason) ?? 0) >= 1);
    });
    const reasonsBefore = await callsByReason();
    const before = await rpcsStarted(both.etcd);
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const after = await rpcsStarted(both.etcd);
    const reasonsAfter = await callsByReason();
    const byReason = [...reasonsAfter].map(([reason, n]) => [reason, n - (reasonsBefore.get(reason) ?? 0)] as const).filter(([, n]) => n > 0);
    // The log's compaction point is asked once a minute, not on every 10 s maintenance round.
    assert.equal(byReason.find(([reason]) => reason === 'compaction-check'), undefined, `calls by reason: ${JSON.stringify(byReason)}`);
    const made = [...after].map(([method, count]) => [method, count - (before.get(method) ?? 0)] as const).filter(([, n]) => n > 0);
    const total = made.reduce((sum, [, n]) => sum + n, 0);
    // Per-second probes alone made 10 in this window; what is left is a consistency page and a member-list refresh.
    assert.ok(total <= 3, `RPCs in 10 idle seconds: ${JSON.stringify(made)}`);

    const clients = rawClients(both.proxy.address);
    try {
      await both.etcd.freeze();
      const frozenAt = Date.now();
      await until('the proxy to call the upstream lost', async () => (await both.proxy.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);
      const lostAfter = Date.now() - frozenAt;
      // The timeout, plus a tick of the liveness check and slack for a loaded machine.
      assert.ok(lostAfter < 3_000 + 3_000, `lost after ${lostAfter} ms`);
      const refused = await call(clients.kv, 'Put', { key: Buffer.from('k'), value: Buffer.from('v') }, { deadlineMs: 5_000 });
      assert.match(refused.error?.details ?? '', /upstream cluster unreachable/);
      both.etcd.signal('SIGCONT');
      await until('the proxy to call the upstream back', async () => (await both.proxy.metrics.upstreamUp.get()).values[0]?.value === 1, 10_000);

      // A killed etcd: its connections close, which the mirror's watch hears at once.
      both.etcd.signal('SIGKILL');
      const killedAt = Date.now();
      await until('the proxy to call the killed upstream lost', async () => (await both.proxy.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);
      const killedLostAfter = Date.now() - killedAt;
      assert.ok(killedLostAfter < 3_000 + 3_000, `lost after ${killedLostAfter} ms`);
    } finally {
      both.etcd.signal('SIGCONT');
      clients.close();
    }
  });
});
