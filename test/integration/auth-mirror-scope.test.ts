// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR): here the mirror merges separate range watches by progress answers it trusts as exact (etcd 3.5.13+), against an etcd that gives such answers.
// Integration (real etcd 3.4 with auth on, HTTP/JSON and gRPC watches): the
// mirror's user is not root and may read /apisix/ and /other/ only, with
// /b/ (which it may not read) between them and /secret/ after. Without
// --mirror-prefix the mirror holds exactly those two ranges; with
// --mirror-prefix /apisix/,/other/,/secret/ it holds the first two and names
// /secret/ in /readyz. Each range is listed and watched on its own (one
// watch over both would span /b/, which etcd refuses). Then etcd is killed:
// what was served is still served (stale-marked), what was refused is still
// refused, and an open watch receives what changed once etcd is back, once.
// Last, the user is granted /b/ too: the mirror follows within the refresh
// interval, and /b/ is then served through the next outage.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { authClient, enableAuth, withToken } from '../support/etcd-auth';
import { call } from '../support/raw-client';
import { b64, httpCall, type HttpAnswer } from '../support/http-gateway';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { scrape } from '../support/metrics';
import { until } from '../support/until';
import { WatchClient, eventsOf } from '../support/watch-client';

const MIRROR_USER = { name: 'mirror', password: 'mirror-pw', roles: ['apisix-and-other'] };
const GATEWAY = { name: 'gateway', password: 'gateway-pw', roles: ['apisix-and-other'] };
const KEYS = { apisix: '/apisix/routes/1', other: '/other/x', between: '/b/between', secret: '/secret/s' };

const prefixRange = (prefix: string): string => `{"key":"${b64(prefix)}","range_end":"${b64(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1))}"}`;

async function readyz(proxy: TestProxy): Promise<{ ready: boolean; state?: string; notMirrored?: { range: string; reason: string }[] }> {
  return (await fetch(`${proxy.url}/readyz`)).json() as Promise<{ ready: boolean; state?: string; notMirrored?: { range: string; reason: string }[] }>;
}

/** A gauge or counter without labels, as the proxy's /metrics says it now. */
async function metricValue(proxy: TestProxy, name: string): Promise<number> {
  return (await scrape(proxy.url)).find((sample) => sample.name === name)?.value ?? Number.NaN;
}

describe("a mirror whose user may read some prefixes only (etcd auth on)", () => {
  let etcd: EtcdServer;
  let wholeProxy: TestProxy;
  let prefixProxy: TestProxy;
  const tokens = new Map<TestProxy, string>();

  const read = (proxy: TestProxy, body: string): Promise<HttpAnswer> => httpCall(proxy.url, '/v3/kv/range', body, { headers: { Authorization: tokens.get(proxy) ?? '' } });
  const values = (answer: HttpAnswer): string[] => ((answer.json as { kvs?: { value: string }[] }).kvs ?? []).map((kv) => Buffer.from(kv.value, 'base64').toString());

  before(async () => {
    etcd = await startEtcd();
    for (const [name, key] of Object.entries(KEYS)) {
      assert.equal((await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(key)}","value":"${b64(name)}"}`)).status, 200);
    }
    await enableAuth(
      etcd.clientAddress,
      [{ name: 'apisix-and-other', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READ' }, { key: '/other/', rangeEnd: '/other0', type: 'READ' }] }],
      [MIRROR_USER, GATEWAY],
    );
    const common = ['--user', `${MIRROR_USER.name}:${MIRROR_USER.password}`, '--upstream-timeout', '1s'];
    wholeProxy = await startTestProxy([etcd.clientUrl], [...common, '--auth-refresh-interval', '1s', '--auth-offline-login']);
    prefixProxy = await startTestProxy([etcd.clientUrl], [...common, '--mirror-prefix', '/apisix/,/other/,/secret/']);
    for (const proxy of [wholeProxy, prefixProxy]) {
      // A login through the proxy teaches it the gateway's token (and, at once, what the gateway may read).
      const login = await httpCall(proxy.url, '/v3/auth/authenticate', JSON.stringify({ name: GATEWAY.name, password: GATEWAY.password }));
      assert.equal(login.status, 200, login.text);
      tokens.set(proxy, (login.json as { token: string }).token);
    }
  });
  after(async () => {
    await wholeProxy?.stop();
    await prefixProxy?.stop();
    await etcd?.stop();
  });

  it('mirrors what the user may read, each range on its own, and names what it leaves to etcd', async () => {
    for (const proxy of [wholeProxy, prefixProxy]) {
      await until('the mirror to sync', async () => (await readyz(proxy)).state === 'synced', 20_000);
      assert.equal(await metricValue(proxy, 'etcd_cache_proxy_upstream_auth_required'), 0, 'the mirror is in use');
      assert.equal(await metricValue(proxy, 'etcd_cache_proxy_upstream_watch_streams'), 1, 'one upstream stream for both ranges');
    }
    assert.equal((await readyz(wholeProxy)).notMirrored, undefined, 'nothing configured is left out');
    assert.deepEqual((await readyz(prefixProxy)).notMirrored?.map((n) => n.range), ['/secret/*']);
    for (const proxy of [wholeProxy, prefixProxy]) {
      assert.deepEqual(values(await read(proxy, prefixRange('/apisix/'))), ['apisix']);
      assert.deepEqual(values(await read(proxy, prefixRange('/other/'))), ['other']);
      const refused = await read(proxy, prefixRange('/secret/'));
      assert.equal(refused.status, 403, `etcd refuses the gateway /secret/: ${refused.text}`);
    }
  });

  it('keeps serving those ranges from the mirror when etcd is killed, and delivers what changed once it is back', async () => {
    const watch = new WatchClient(wholeProxy.address, { metadata: { token: tokens.get(wholeProxy) ?? '' } });
    try {
      const [created] = await watch.createAll([{ key: Buffer.from('/other/'), range_end: Buffer.from('/other0') }]);
      assert.equal(created?.canceled ?? false, false, JSON.stringify(created));
      // A change to each range, straight to etcd, reaches the mirror (both watches of its stream deliver).
      const root = await httpCall(etcd.clientUrl, '/v3/auth/authenticate', '{"name":"root","password":"root-pw"}');
      const rootToken = (root.json as { token: string }).token;
      const put = async (key: string, value: string): Promise<number> => {
        const answer = await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(key)}","value":"${b64(value)}"}`, { headers: { Authorization: rootToken } });
        assert.equal(answer.status, 200, answer.text);
        return Number((answer.json as { header: { revision: string } }).header.revision);
      };
      await put(KEYS.apisix, 'apisix-2');
      const revision = await put(KEYS.other, 'other-2');
      await wholeProxy.mirrored(revision);
      await prefixProxy.mirrored(revision);
      await watch.next('the /other/ change', (r) => eventsOf([r]).some((e) => e.kv?.value?.toString() === 'other-2'));

      etcd.signal('SIGKILL');
      await until('etcd to be declared lost', async () => (await readyz(wholeProxy)).state === 'stale', 15_000);
      for (const proxy of [wholeProxy, prefixProxy]) {
        await until('etcd lost', async () => (await readyz(proxy)).state === 'stale', 15_000);
        const apisix = await read(proxy, prefixRange('/apisix/'));
        assert.equal(apisix.status, 200, apisix.text);
        assert.equal(apisix.headers['x-etcd-cache-proxy-stale'], 'true');
        assert.deepEqual(values(apisix), ['apisix-2']);
        assert.equal((await read(proxy, prefixRange('/other/'))).status, 200);
        assert.notEqual((await read(proxy, prefixRange('/secret/'))).status, 200, 'refused before the outage, refused during it');
        assert.notEqual((await read(proxy, prefixRange('/b/'))).status, 200);
      }
      assert.equal(watch.ended, null, 'the watch stays open');
      // A login during the outage (--auth-offline-login): the gateway's last good password, and what it may read.
      const wrong = await httpCall(wholeProxy.url, '/v3/auth/authenticate', JSON.stringify({ name: GATEWAY.name, password: 'wrong' }));
      assert.notEqual(wrong.status, 200, 'a wrong password is refused offline too');
      const offline = await httpCall(wholeProxy.url, '/v3/auth/authenticate', JSON.stringify({ name: GATEWAY.name, password: GATEWAY.password }));
      assert.equal(offline.status, 200, offline.text);
      const offlineToken = (offline.json as { token: string }).token;
      const asOffline = (body: string): Promise<HttpAnswer> => httpCall(wholeProxy.url, '/v3/kv/range', body, { headers: { Authorization: offlineToken } });
      assert.deepEqual(values(await asOffline(prefixRange('/apisix/'))), ['apisix-2']);
      assert.equal((await asOffline(prefixRange('/secret/'))).status === 200, false, 'still not /secret/');

      await etcd.restart();
      const rootAgain = await httpCall(etcd.clientUrl, '/v3/auth/authenticate', '{"name":"root","password":"root-pw"}');
      const after = await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(KEYS.other)}","value":"${b64('other-3')}"}`, { headers: { Authorization: (rootAgain.json as { token: string }).token } });
      assert.equal(after.status, 200, after.text);
      await watch.next('the change made after etcd came back', (r) => eventsOf([r]).some((e) => e.kv?.value?.toString() === 'other-3'), 0, 20_000);
      await watch.quiet(500);
      const seen = eventsOf(watch.responses).map((e) => e.kv?.value?.toString());
      assert.deepEqual(seen, ['other-2', 'other-3'], 'each change once, in order, and nothing from the other range');
    } finally {
      watch.close();
    }
  });

  it('follows a new permission of its user: the new range is mirrored and served through the next outage', async () => {
    // etcd's simple tokens did not survive its restart: the gateway logs in again, through the proxy.
    const login = await httpCall(wholeProxy.url, '/v3/auth/authenticate', JSON.stringify({ name: GATEWAY.name, password: GATEWAY.password }));
    assert.equal(login.status, 200, login.text);
    tokens.set(wholeProxy, (login.json as { token: string }).token);
    const rootLogin = await httpCall(etcd.clientUrl, '/v3/auth/authenticate', '{"name":"root","password":"root-pw"}');
    const rootToken = (rootLogin.json as { token: string }).token;
    const relists = await metricValue(wholeProxy, 'etcd_cache_proxy_mirror_relists_total');
    const auth = authClient(etcd.clientAddress);
    try {
      const granted = await call(auth, 'RoleGrantPermission', { name: 'apisix-and-other', perm: { permType: 'READ', key: Buffer.from('/b/'), range_end: Buffer.from('/b0') } }, { metadata: withToken(rootToken) });
      assert.equal(granted.error, null, granted.error?.details);
    } finally {
      auth.close();
    }
    await until('the mirror to list its new scope', async () => (await metricValue(wholeProxy, 'etcd_cache_proxy_mirror_relists_total')) > relists, 20_000);
    const put = await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(KEYS.between)}","value":"${b64('between-2')}"}`, { headers: { Authorization: rootToken } });
    assert.equal(put.status, 200, put.text);
    await wholeProxy.mirrored(Number((put.json as { header: { revision: string } }).header.revision));
    // The gateway, reading on from the mirror (serializable: linearizable reads of a mirror of some ranges
    // go to etcd while it answers), is let read /b/ once its own permissions are read again (within the interval).
    const serializable = `${prefixRange('/b/').slice(0, -1)},"serializable":true}`;
    await until('the gateway to read /b/ from the mirror', async () => values(await read(wholeProxy, serializable)).includes('between-2'), 10_000, 200);

    etcd.signal('SIGKILL');
    await until('etcd lost', async () => (await readyz(wholeProxy)).state === 'stale', 15_000);
    const between = await read(wholeProxy, prefixRange('/b/'));
    assert.equal(between.status, 200, between.text);
    assert.deepEqual(values(between), ['between-2']);
    assert.deepEqual(values(await read(wholeProxy, prefixRange('/apisix/'))), ['apisix-2'], 'the other ranges are still held');
    await etcd.restart();
  });
});
