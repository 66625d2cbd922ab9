// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, plain HTTP): /readyz on the client port is 200
// while reads are answered (mirror synced, or stale while etcd is gone) and
// 503 with the reason while they are not: before the first sync, and during
// an outage with --stale-reads=deny.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { untilValue } from '../support/until';
import { startTestProxy, type TestProxy } from '../support/proxy';

interface ReadyAnswer {
  readonly status: number;
  readonly body: { ready: boolean; state?: string; revision?: number; reason?: string };
}

async function readyz(proxy: TestProxy): Promise<ReadyAnswer> {
  const response = await fetch(`${proxy.url}/readyz`);
  return { status: response.status, body: (await response.json()) as ReadyAnswer['body'] };
}

async function until(proxy: TestProxy, what: string, check: (answer: ReadyAnswer) => boolean): Promise<ReadyAnswer> {
  let last: ReadyAnswer | undefined;
  return untilValue(
    () => `${what}; last answer ${JSON.stringify(last)}`,
    async () => {
      last = await readyz(proxy);
      return check(last) ? last : undefined;
    },
    15_000,
    100,
  );
}

describe('/readyz', () => {
  let etcd: EtcdServer;
  const proxies: TestProxy[] = [];

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await etcd?.stop();
  });

  it('is 503 while the mirror has never synced, with the reason', async () => {
    const nowhere = await freePort();
    const proxy = await startTestProxy([`http://127.0.0.1:${nowhere}`], ['--upstream-timeout', '1s']);
    proxies.push(proxy);
    const first = await readyz(proxy);
    assert.equal(first.status, 503);
    assert.equal(first.body.ready, false);
    const lost = await until(proxy, 'the upstream declared lost', (answer) => answer.body.reason === 'upstream lost before the mirror ever synced');
    assert.equal(lost.status, 503);
    const post = await fetch(`${proxy.url}/readyz`, { method: 'POST' });
    assert.equal(post.status, 405);
  });

  it('is 200 once synced, stays 200 (stale) when etcd is killed, and 503 there with --stale-reads=deny', async () => {
    const put = await fetch(`${etcd.clientUrl}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/apisix/routes/1').toString('base64'), value: 'e30=' }) });
    const revision = Number(((await put.json()) as { header: { revision: string } }).header.revision);
    const allow = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s']);
    const deny = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s', '--stale-reads', 'deny']);
    proxies.push(allow, deny);
    for (const proxy of [allow, deny]) {
      const synced = await until(proxy, 'the first sync', (answer) => answer.status === 200);
      assert.deepEqual(synced.body, { ready: true, state: 'synced', revision });
    }

    etcd.signal('SIGKILL');
    const stale = await until(allow, 'the stale state', (answer) => answer.body.state === 'stale');
    assert.deepEqual(stale, { status: 200, body: { ready: true, state: 'stale', revision } });
    const denied = await until(deny, 'not ready', (answer) => answer.status === 503);
    assert.deepEqual(denied.body, { ready: false, reason: 'upstream lost and --stale-reads=deny' });

    await etcd.restart();
    await until(allow, 'synced again', (answer) => answer.body.state === 'synced');
    await until(deny, 'ready again', (answer) => answer.status === 200);
  });
});
