// Integration (real etcd, the proxy's CLI in its own process): a flood of
// Watch streams, each connection opening hundreds at once, must not starve
// anyone else. Each connection's burst reaches the proxy in one read, and
// started there, every stream of it was set up and answered before the proxy
// read any other socket: a plain JSON Range on a new connection waited behind
// the whole flood (seconds, with 10 000 streams; clients timed out and some
// were reset). Now a connection's streams start a few at a time, one
// connection after another, with the event loop free in between: reads on
// new connections are answered WHILE the flood is still being created.
//
// What is asserted is order, not speed (this machine's two cores are shared):
// every watch is created, every probe answered (none reset, none failed),
// and while each connection's streams were being created, probes made on
// new connections were answered.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { sleep } from '../support/until';
import { openWatchFlood, probeEvery, probeJsonRange, type ProbeResult } from '../support/watch-flood';

const CONNECTIONS = 4;
const STREAMS_PER_CONNECTION = 500;
const PROBE_EVERY_MS = 20;
/** Generous: a probe not answered within this long counts as failed (what a gateway's client would do). */
const PROBE_TIMEOUT_MS = 10_000;
/** Probes that must be answered while one connection's streams are still being created. */
const ANSWERED_DURING_CREATION = 3;
const PREFIX = '/flood/';

describe('a flood of watch streams', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;

  before(async () => {
    etcd = await startEtcd();
    const clients = rawClients(etcd.clientAddress);
    for (let i = 0; i < 10; i += 1) {
      const outcome = await call(clients.kv, 'Put', { key: Buffer.from(`${PREFIX}${i}`), value: Buffer.from(`v${i}`) });
      assert.equal(outcome.error, null);
    }
    clients.close();
    proxy = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  it('answers reads on new connections while thousands of watch streams are being created, and resets none', async (t) => {
    const [host, port] = [proxy.address.split(':')[0] ?? '127.0.0.1', Number(proxy.address.split(':')[1])];
    const probe = (): Promise<ProbeResult> => probeJsonRange(host, port, Buffer.from(`${PREFIX}1`), PROBE_TIMEOUT_MS);
    // The proxy answers from its mirror once it has one: wait for that before the flood.
    for (let tries = 0; (await probe()).outcome !== 'ok'; tries += 1) {
      assert.ok(tries < 200, 'the proxy never answered a first JSON Range');
      await sleep(50);
    }

    const flood = openWatchFlood(proxy.address, { connections: CONNECTIONS, streamsPerConnection: STREAMS_PER_CONNECTION, key: Buffer.from(PREFIX), rangeEnd: Buffer.from('/flood0') });
    const prober = probeEvery(PROBE_EVERY_MS, probe);
    try {
      await flood.allCreated(120_000);
      await sleep(200);
    } finally {
      await prober.stop();
      flood.close();
    }

    assert.equal(flood.failed(), 0, 'no watch stream failed');
    const failed = prober.results.filter((r) => r.outcome !== 'ok');
    assert.deepEqual(failed, [], `every probe on a new connection is answered (of ${prober.results.length})`);
    const answeredAt = prober.results.map((r) => r.startedAt + r.ms);
    const during = flood.createdWindows().map(({ first, last }) => answeredAt.filter((at) => at > first && at < last).length);
    const worst = Math.min(...during);
    t.diagnostic(`probes: ${prober.results.length}, answered during each connection's creation: ${during.join(', ')}`);
    assert.ok(
      worst >= ANSWERED_DURING_CREATION,
      `probes answered while each connection's streams were being created: ${during.join(', ')} (windows ${flood
        .createdWindows()
        .map(({ first, last }) => `${(last - first).toFixed(0)} ms`)
        .join(', ')}); at least ${ANSWERED_DURING_CREATION} each, or a connection's flood held up everyone else`,
    );
  });
});
