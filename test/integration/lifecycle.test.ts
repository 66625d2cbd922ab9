// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd): a proxy stopped at any moment of its start-up,
// before, during or after the mirror's first list, stops, and leaves nothing
// behind that would keep the upstream or the test process busy.
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sleep, startEtcd, type EtcdServer } from '../support/etcd';
import { until } from '../support/until';
import { startTestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';

/** etcd's own gauge of open watch streams (grpc-prometheus). */
async function etcdWatchStreams(etcd: EtcdServer): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const started = text.split('\n').find((l) => l.startsWith('grpc_server_started_total{') && l.includes('grpc_method="Watch"'));
  const handled = text
    .split('\n')
    .filter((l) => l.startsWith('grpc_server_handled_total{') && l.includes('grpc_method="Watch"'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  return (started === undefined ? 0 : Number(started.split(' ').pop())) - handled;
}

describe('stopping the proxy', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
    // some keys, so the first list takes a moment
    const seeded = rawClients(etcd.clientAddress);
    try {
      for (let i = 0; i < 200; i += 1) await call(seeded.kv, 'Put', { key: Buffer.from(`seed/${i}`), value: Buffer.alloc(512, i) });
    } finally {
      seeded.close();
    }
  });
  after(async () => {
    await etcd?.stop();
  });

  it('stops at any moment of its start-up, and its upstream watch goes with it', async () => {
    const stopBound = 10_000; // far above the 2 s grace: this catches a hang, it times nothing
    // Three processes start for each proxy with --workers: fewer rounds, still every stage of a start-up.
    const rounds = process.env.ECP_TEST_WORKERS === undefined ? 24 : 8;
    for (let i = 0; i < rounds; i += 1) {
      const proxy = await startTestProxy([etcd.clientUrl], i % 2 === 0 ? [] : ['--mode', 'readonly']);
      const delayMs = (i * (24 / rounds) * 9) % 120;
      await sleep(delayMs);
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), stopBound)));
      const outcome = await Promise.race([proxy.stop().then(() => 'stopped' as const), hung]);
      clearTimeout(timer);
      assert.equal(outcome, 'stopped', `proxy stopped ${delayMs} ms after start did not finish stopping`);
    }
    // every mirror watch the proxies opened was closed on etcd's side
    await until('etcd to hold no watch stream of the stopped proxies', async () => (await etcdWatchStreams(etcd)) === 0, 5_000);
  });

  it('closes idle HTTP keep-alive connections when it stops, instead of waiting for the client to drop them', async () => {
    const proxy = await startTestProxy([etcd.clientUrl]);
    const agent = new Agent({ keepAlive: true, keepAliveMsecs: 60_000 });
    try {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const req = request(`${proxy.url}/metrics`, { agent }, (response) => {
          response.resume();
          response.on('end', () => resolve(req.socket as Socket));
        });
        req.on('error', reject);
        req.end();
      });
      let closedAt: number | null = null;
      socket.once('close', () => (closedAt = Date.now()));
      assert.equal(socket.destroyed, false, 'the agent keeps the connection for the next request');
      await proxy.stop();
      await until('the idle keep-alive connection to be closed by the stopped proxy', () => closedAt !== null, 2_000, 20);
    } finally {
      agent.destroy();
    }
  });
});
