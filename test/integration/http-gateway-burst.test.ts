// Integration (real etcd, the proxy's CLI in its own process, plain HTTP):
// the JSON gateway reaches the proxy's gRPC services over one in-memory
// HTTP/2 connection. A burst of a thousand watches opened at once, after a
// stretch of concurrent reads, once deadlocked that connection for good
// (both ends waiting to write, neither reading): every HTTP request then
// hung while gRPC clients were still answered. Here all of them get their
// `created` answer, reads answer, and one change reaches every watcher.
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { until } from '../support/until';
import { b64, httpCall, HttpStream } from '../support/http-gateway';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';

const WATCHERS = 1_000;
const RANGE = JSON.stringify({ key: b64('/apisix'), range_end: b64('/apisix0') });

/** Keep-alive callers reading the prefix for a while, as gateways' workers do at start. */
async function readFor(url: string, ms: number, callers: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: callers });
  const stopAt = Date.now() + ms;
  let answered = 0;
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const call = request(`${url}/v3/kv/range`, { method: 'POST', agent, headers: { 'content-length': Buffer.byteLength(RANGE) } }, (response) => {
        response.resume();
        response.on('end', () => {
          if (response.statusCode === 200) answered += 1;
          resolve();
        });
      });
      call.on('error', () => resolve());
      call.end(RANGE);
    });
  await Promise.all(Array.from({ length: callers }, async () => {
    while (Date.now() < stopAt) await once();
  }));
  agent.destroy();
  return answered;
}

describe('the JSON gateway under a burst of watches', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  const streams: HttpStream[] = [];

  before(async () => {
    etcd = await startEtcd();
    for (let i = 0; i < 20; i += 1) await httpCall(etcd.clientUrl, '/v3/kv/put', JSON.stringify({ key: b64(`/apisix/routes/${i}`), value: b64(`{"uri":"/r${i}","pad":"${'x'.repeat(200)}"}`) }));
    proxy = await startProxyProcess([etcd.clientUrl]);
  });
  after(async () => {
    streams.forEach((stream) => stream.close());
    await proxy?.stop();
    await etcd?.stop();
  });

  it('opens a thousand watches at once after concurrent reads, keeps answering, and delivers a change to all', async () => {
    const url = `http://${proxy.address}`;
    assert.ok((await readFor(url, 2_000, 32)) > 0);
    const body = JSON.stringify({ create_request: { key: b64('/apisix'), range_end: b64('/apisix0') } });
    for (let i = 0; i < WATCHERS; i += 1) streams.push(new HttpStream(url, '/v3/watch', { body }));
    const isCreated = (stream: HttpStream): boolean => stream.results<{ created?: boolean }>().some((r) => r.created === true);
    const started = Date.now();
    await until(() => `every watch created (${streams.filter(isCreated).length} of ${WATCHERS})`, () => streams.every(isCreated), 60_000, 100);
    const read = await httpCall(url, '/v3/kv/range', RANGE, { timeoutMs: 10_000 });
    assert.equal(read.status, 200);

    const put = await httpCall(etcd.clientUrl, '/v3/kv/put', JSON.stringify({ key: b64('/apisix/routes/0'), value: b64('{"uri":"/changed"}') }));
    const revision = (put.json as { header: { revision: string } }).header.revision;
    const hasChange = (stream: HttpStream): boolean =>
      stream.results<{ events?: { kv: { mod_revision: string } }[] }>().some((r) => (r.events ?? []).some((e) => e.kv.mod_revision === revision));
    await until(() => `the change on every watch (${streams.filter(hasChange).length} of ${WATCHERS})`, () => streams.every(hasChange), Math.max(0, started + 60_000 - Date.now()), 100);
    assert.deepEqual(streams.filter((stream) => stream.ended).length, 0, 'no watch stream ended');
  });
});
