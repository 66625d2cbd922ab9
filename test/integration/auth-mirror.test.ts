// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, HTTP/JSON and its Authorization header): the
// mirror serves nobody once etcd has auth on (docs/design.md, "Authentication"), also when
// auth is turned on while the proxy runs (its watch, created before, goes on
// delivering) and when a proxy with a full mirror on disk starts against an
// etcd that has auth on. Every read is then etcd's answer, token and all;
// when auth goes off again, the mirror serves again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { b64, httpCall, type HttpAnswer } from '../support/http-gateway';
import { scrape, total } from '../support/metrics';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { until } from '../support/until';

const KEY = '/apisix/routes/1';
const linearizable = `{"key":"${b64(KEY)}"}`;
const serializable = `{"key":"${b64(KEY)}","serializable":true}`;

/** What a client reads: status and body, without the header fields two answers legitimately differ in. */
function seen(answer: HttpAnswer): { status: number; body: unknown } {
  const body = answer.json as { header?: Record<string, string> } | undefined;
  if (body?.header !== undefined) body.header = { revision: body.header.revision ?? '' };
  return { status: answer.status, body };
}

async function metric(proxy: TestProxy, name: string): Promise<number> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

describe('the mirror and etcd auth', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let dataDir: string;
  let rootToken = '';

  const authenticate = async (url: string): Promise<string> => {
    const login = await httpCall(url, '/v3/auth/authenticate', '{"name":"root","password":"rootpw"}');
    assert.equal(login.status, 200, login.text);
    return (login.json as { token: string }).token;
  };
  /** The same read straight to etcd and through the proxy. */
  const both = async (body: string, token?: string): Promise<[HttpAnswer, HttpAnswer]> => {
    const headers: Record<string, string> = token === undefined ? {} : { Authorization: token };
    return Promise.all([httpCall(etcd.clientUrl, '/v3/kv/range', body, { headers }), httpCall(proxy.url, '/v3/kv/range', body, { headers })]);
  };
  const matchesEtcd = async (body: string, token?: string): Promise<boolean> => {
    const [direct, proxied] = await both(body, token);
    return JSON.stringify(seen(direct)) === JSON.stringify(seen(proxied));
  };
  /** Ranges the proxy answered, in all and from the mirror (the JSON gateway counts with the gRPC calls). */
  const rangesCounted = async (): Promise<{ all: number; mirror: number }> => {
    const samples = await scrape(proxy.url);
    const requests = 'etcd_cache_proxy_grpc_requests_total';
    return { all: total(samples, requests, { method: 'Range' }), mirror: total(samples, requests, { method: 'Range', source: 'mirror' }) };
  };
  /**
   * The same read straight to etcd and through the proxy, and the proxy's count
   * of it: a read etcd answered (forwarded) reads the same, only the count's
   * source tells that the mirror answered it.
   */
  const bothFromMirror = async (body: string): Promise<[HttpAnswer, HttpAnswer]> => {
    const before = await rangesCounted();
    const answers = await both(body);
    let after = before;
    await until('the proxy to count the read', async () => (after = await rangesCounted()).all > before.all, 5_000, 10);
    assert.deepEqual({ all: after.all - before.all, mirror: after.mirror - before.mirror }, { all: 1, mirror: 1 }, `not answered by the mirror: ${body}`);
    return answers;
  };

  before(async () => {
    etcd = await startEtcd();
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-auth-'));
    assert.equal((await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(KEY)}","value":"${b64('{"uri":"/a"}')}"}`)).status, 200);
    proxy = await startTestProxy([etcd.clientUrl], [], { dataDir });
    await proxy.mirrored(2);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('stops serving the mirror when auth goes on while the proxy runs, and answers as etcd does', async () => {
    assert.equal(await metric(proxy, 'etcd_cache_proxy_upstream_auth_required'), 0);
    for (const [path, body] of [
      ['/v3/auth/user/add', '{"name":"root","password":"rootpw"}'],
      ['/v3/auth/user/grant', '{"user":"root","role":"root"}'],
      ['/v3/auth/enable', '{}'],
    ] as const) {
      const answer = await httpCall(etcd.clientUrl, path, body);
      assert.equal(answer.status, 200, `${path}: ${answer.text}`);
    }
    // A linearizable read learns it from its own read barrier, a serializable one from the periodic probe.
    const [direct] = await both(linearizable);
    assert.notEqual(direct.status, 200, 'etcd refuses an anonymous read');
    await until('anonymous linearizable reads answered as etcd answers them', () => matchesEtcd(linearizable));
    await until('anonymous serializable reads answered as etcd answers them', () => matchesEtcd(serializable));
    assert.equal(await metric(proxy, 'etcd_cache_proxy_upstream_auth_required'), 1);
    const ready = (await (await fetch(`${proxy.url}/readyz`)).json()) as { state: string };
    assert.equal(ready.state, 'forwarding');

    rootToken = await authenticate(proxy.url);
    const [withTokenDirect, withToken] = await both(serializable, rootToken);
    assert.equal(withToken.status, 200, withToken.text);
    assert.deepEqual(seen(withToken), seen(withTokenDirect));
  });

  it('does not serve a mirror on disk to a proxy restarted against etcd with auth on', async () => {
    await proxy.stop();
    proxy = await startTestProxy([etcd.clientUrl], [], { dataDir });
    // Right after the start the proxy may not have asked etcd yet; once it has, every answer is etcd's.
    await until('the proxy learns auth is on', async () => (await metric(proxy, 'etcd_cache_proxy_upstream_auth_required')) === 1);
    assert.ok(await matchesEtcd(serializable));
    assert.ok(await matchesEtcd(linearizable));
    assert.ok(await matchesEtcd(serializable, rootToken));
  });

  it('serves the mirror again once auth is off', async () => {
    const disabled = await httpCall(etcd.clientUrl, '/v3/auth/disable', '{}', { headers: { Authorization: rootToken } });
    assert.equal(disabled.status, 200, disabled.text);
    await until('the mirror serving again', async () => (await metric(proxy, 'etcd_cache_proxy_upstream_auth_required')) === 0);
    const [, proxied] = await bothFromMirror(serializable);
    assert.equal(proxied.status, 200, proxied.text);
    assert.equal(Buffer.from((proxied.json as { kvs: { value: string }[] }).kvs[0]?.value ?? '', 'base64').toString(), '{"uri":"/a"}');
    const changed = await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(KEY)}","value":"${b64('{"uri":"/b"}')}"}`);
    assert.equal(changed.status, 200);
    await until('the mirror following etcd again', async () => {
      const [direct, read] = await both(linearizable);
      return read.status === 200 && JSON.stringify(seen(read)) === JSON.stringify(seen(direct));
    });
    const [direct, read] = await bothFromMirror(linearizable);
    assert.deepEqual(seen(read), seen(direct));
  });
});
