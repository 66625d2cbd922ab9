// Integration (real etcd 3.4 issuing JWT tokens, RS256): with
// --auth-jwt-pub-key the proxy recognises a token whose login it never saw
// (the client logged in at etcd itself) and serves that user from the mirror
// what etcd would serve it; forged tokens get etcd's answer. During an
// outage, a JWT issued before an auth change the proxy saw (a newer JWT etcd
// took) is refused as etcd refuses it, and a JWT without exp is refused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { sign } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authClient, enableAuth, logInAll, withToken } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');

describe("etcd's JWT tokens, checked by the proxy", () => {
  let keys: string;
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;
  let tokens: Map<string, string>;

  const proxyArgs = (): string[] => ['--user', 'mirror:mirror-pw', '--auth-jwt-pub-key', join(keys, 'pub.pem'), '--upstream-timeout', '1s'];

  before(async () => {
    keys = mkdtempSync(join(tmpdir(), 'ecp-jwt-'));
    execFileSync('openssl', ['genrsa', '-out', join(keys, 'priv.pem'), '2048'], { stdio: 'ignore' });
    execFileSync('openssl', ['rsa', '-in', join(keys, 'priv.pem'), '-pubout', '-out', join(keys, 'pub.pem')], { stdio: 'ignore' });
    etcd = await startEtcd({ extraArgs: [`--auth-token=jwt,pub-key=${join(keys, 'pub.pem')},priv-key=${join(keys, 'priv.pem')},sign-method=RS256,ttl=10m`] });
    direct = rawClients(etcd.clientAddress);
    for (const key of ['app/1', 'other/1']) assert.equal((await call(direct.kv, 'Put', { key: b(key), value: b(`v-${key}`) })).error, null);
    // Logged in at etcd itself: the proxy never sees these logins.
    tokens = await enableAuth(
      etcd.clientAddress,
      [
        { name: 'app-reader', permissions: [{ key: 'app/', rangeEnd: 'app0', type: 'READ' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        { name: 'app', password: 'app-pw', roles: ['app-reader'] },
        { name: 'mirror', password: 'mirror-pw', roles: ['mirror-reader'] },
      ],
    );
    proxy = await startTestProxy([etcd.clientUrl], proxyArgs(), { dataDir: join(keys, 'proxy-data') });
    await proxy.mirrored(3);
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
    if (keys !== undefined) rmSync(keys, { recursive: true, force: true });
  });

  const both = async (request: object, token: string): Promise<[string, string]> => {
    const shape = async (clients: RawClients): Promise<string> => {
      const outcome = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', request, { metadata: withToken(token) });
      return JSON.stringify({ code: outcome.error?.code, details: outcome.error?.details, values: (outcome.response?.kvs ?? []).map((kv) => kv.value.toString()) });
    };
    return [await shape(direct), await shape(proxied)];
  };

  it('serves a token whose login it never saw from the mirror, as etcd would', async () => {
    const token = tokens.get('app') ?? '';
    const decisions = async (): Promise<number> => (await proxy.metrics.authDecisions.get()).values.find((v) => v.labels.result === 'permit')?.value ?? 0;
    const before = await decisions();
    for (const request of [
      { key: b('app/'), range_end: b('app0'), serializable: true },
      { key: b('app/1') },
      { key: b('other/1'), serializable: true },
      { key: b('a'), range_end: b('z'), serializable: true },
    ]) {
      const [fromEtcd, fromProxy] = await both(request, token);
      assert.equal(fromProxy, fromEtcd, JSON.stringify(request));
    }
    assert.ok((await decisions()) - before >= 2, 'the permitted reads were the mirror\'s');
  });

  it('answers forged tokens as etcd does', async () => {
    const [head, body] = (tokens.get('app') ?? '').split('.');
    const forged = [
      `${part({ alg: 'none', typ: 'JWT' })}.${part({ username: 'root', revision: 1, exp: Math.floor(Date.now() / 1000) + 600 })}.`,
      `${head}.${part({ username: 'root', revision: 4, exp: Math.floor(Date.now() / 1000) + 600 })}.${'A'.repeat(342)}`,
      `${head}.${body}.${'A'.repeat(342)}`,
    ];
    for (const token of forged) {
      const [fromEtcd, fromProxy] = await both({ key: b('other/1'), serializable: true }, token);
      assert.match(fromEtcd, /invalid auth token/);
      assert.equal(fromProxy, fromEtcd, token.slice(0, 60));
    }
  });

  it('refuses during an outage a JWT issued before an auth change, as etcd does, and a JWT without exp', async () => {
    const stale = tokens.get('app') ?? '';
    const root = authClient(etcd.clientAddress);
    try {
      // A role added: the auth store's revision moves past every JWT issued before.
      assert.equal((await call(root, 'RoleAdd', { name: 'bump' }, { metadata: withToken(tokens.get('root') ?? '') })).error, null);
    } finally {
      root.close();
    }
    const fresh = (await logInAll(etcd.clientAddress, [{ name: 'app', password: 'app-pw' }])).get('app') ?? '';
    const request = { key: b('app/1'), serializable: true };
    const [staleAtEtcd] = await both(request, stale);
    assert.match(staleAtEtcd, /revision of auth store is old/);
    // A client reads with its new token through the proxy: etcd takes it, which tells the proxy the auth revision.
    const [freshAtEtcd, freshAtProxy] = await both(request, fresh);
    assert.equal(freshAtProxy, freshAtEtcd);
    assert.match(freshAtProxy, /v-app\/1/);
    const [head, body] = fresh.split('.');
    const claims = JSON.parse(Buffer.from(body ?? '', 'base64url').toString()) as { username: string; revision: number };
    const input = `${head}.${part({ username: claims.username, revision: claims.revision })}`;
    const noExp = `${input}.${sign('sha256', Buffer.from(input), readFileSync(join(keys, 'priv.pem'))).toString('base64url')}`;

    etcd.signal('SIGKILL');
    await until('the proxy to call the upstream lost', async () => (await proxy.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);
    const outage = async (token: string): Promise<string> => {
      const outcome = await call<{ kvs?: { value: Buffer }[] }>(proxied.kv, 'Range', request, { metadata: withToken(token) });
      return JSON.stringify({ code: outcome.error?.code, details: outcome.error?.details, values: (outcome.response?.kvs ?? []).map((kv) => kv.value.toString()) });
    };
    assert.equal(await outage(stale), staleAtEtcd, 'the stale JWT: refused as etcd refused it');
    assert.match(await outage(fresh), /v-app\/1/, 'the fresh one: served');
    assert.match(await outage(noExp), /invalid auth token/, 'a JWT without exp: refused');

    // Restarted while etcd is still down: the auth revision it had learned is kept in the data dir.
    proxied.close();
    await proxy.stop();
    proxy = await startTestProxy([etcd.clientUrl], proxyArgs(), { dataDir: join(keys, 'proxy-data') });
    proxied = rawClients(proxy.address);
    await until('the restarted proxy to call the upstream lost', async () => (await proxy.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);
    assert.equal(await outage(stale), staleAtEtcd, 'the stale JWT, after a restart: refused as etcd refused it');
  });
});
