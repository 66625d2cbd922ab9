// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, plain HTTP): /readyz on the client port is 200
// while reads are answered (mirror synced, or stale while etcd is gone) and
// 503 with the reason while they are not: before the first sync, and during
// an outage with --stale-reads=deny. A proxy restarted during an outage is
// stale from its first answer, not synced until the upstream timeout passes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  // Its upstream is etcd itself here (unknown before any member answered); tiers-stale.test.ts covers the rest.
  const { upstream, ...body } = (await response.json()) as ReadyAnswer['body'] & { upstream?: { kind: string } };
  assert.ok(upstream !== undefined && ['etcd', 'unknown'].includes(upstream.kind), JSON.stringify(upstream));
  return { status: response.status, body };
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
  const dirs: string[] = [];

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await etcd?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
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
    const [allowDir, denyDir] = [mkdtempSync(join(tmpdir(), 'ecp-readyz-')), mkdtempSync(join(tmpdir(), 'ecp-readyz-'))];
    dirs.push(allowDir, denyDir);
    const allow = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s'], { dataDir: allowDir });
    const deny = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s', '--stale-reads', 'deny'], { dataDir: denyDir });
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

    // Restarted during the outage, with an upstream timeout far away: no member has answered since start, so nothing is synced.
    await Promise.all([allow.stop(), deny.stop()]);
    proxies.splice(proxies.indexOf(allow), 2);
    const allowAgain = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '60s'], { dataDir: allowDir });
    const denyAgain = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '60s', '--stale-reads', 'deny'], { dataDir: denyDir });
    proxies.push(allowAgain, denyAgain);
    assert.deepEqual(await readyz(allowAgain), { status: 200, body: { ready: true, state: 'stale', revision } });
    assert.deepEqual(await readyz(denyAgain), { status: 503, body: { ready: false, reason: 'no member has answered since start, and --stale-reads=deny' } });

    await etcd.restart();
    await until(allowAgain, 'synced again', (answer) => answer.body.state === 'synced');
    await until(denyAgain, 'ready again', (answer) => answer.status === 200);
  });
});
