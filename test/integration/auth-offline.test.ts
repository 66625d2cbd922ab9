// Integration (real etcd 3.4 with auth on, killed): an APISIX-like gateway
// restarted while etcd is down logs in through the JSON gateway, reads its
// prefix and watches it. With --auth-offline-login the proxy answers that
// login itself (the same name and password succeeded upstream before), with
// a token of its own that is good only at this proxy, for what the user could
// read; a wrong password, an unknown user and a user without permission are
// refused, and a concurrent burst of wrong passwords with the right one last
// gets no token (also with --workers 2, whose budgets the primary holds);
// once etcd is back the proxy's tokens end with etcd's "invalid auth token"
// and never reach etcd. Without the option, a login fails as it does with
// etcd down.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { enableAuth } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { b64, httpCall, HttpStream } from '../support/http-gateway';
import type { Client } from '@grpc/grpc-js';
import { authClient } from '../support/etcd-auth';
import { startProxyProcess, startTestProxy, type ProxyProcess, type TestProxy } from '../support/proxy';
import { call } from '../support/raw-client';
import { until } from '../support/until';

const MIRROR_USER = 'mirror:mirror-pw';

async function login(url: string, name: string, password: string): Promise<{ status: number; token: string; text: string }> {
  const answer = await httpCall(url, '/v3/auth/authenticate', JSON.stringify({ name, password }));
  return { status: answer.status, token: (answer.json as { token?: string } | undefined)?.token ?? '', text: answer.text };
}

async function readPrefix(url: string, token: string): Promise<{ status: number; keys: string[]; text: string }> {
  const answer = await httpCall(url, '/v3/kv/range', JSON.stringify({ key: b64('/apisix/'), range_end: b64('/apisix0') }), { headers: { Authorization: token } });
  const kvs = (answer.json as { kvs?: { key: string }[] } | undefined)?.kvs ?? [];
  return { status: answer.status, keys: kvs.map((kv) => Buffer.from(kv.key, 'base64').toString()), text: answer.text };
}

describe('logins while etcd is down', () => {
  let etcd: EtcdServer;
  let offline: TestProxy;
  let plain: TestProxy;
  let dataDir: string;

  before(async () => {
    etcd = await startEtcd();
    for (const key of ['/apisix/routes/1', '/apisix/upstreams/1']) {
      assert.equal((await httpCall(etcd.clientUrl, '/v3/kv/put', JSON.stringify({ key: b64(key), value: b64('{}') }))).status, 200);
    }
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'apisix-reader', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READWRITE' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        { name: 'apisix', password: 'apisix-pw', roles: ['apisix-reader'] },
        { name: 'nobody', password: 'nobody-pw', roles: [] },
        { name: 'mirror', password: 'mirror-pw', roles: ['mirror-reader'] },
      ],
    );
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-offline-'));
    offline = await startTestProxy([etcd.clientUrl], ['--user', MIRROR_USER, '--auth-offline-login', '--upstream-timeout', '1s'], { dataDir });
    plain = await startTestProxy([etcd.clientUrl], ['--user', MIRROR_USER, '--upstream-timeout', '1s']);
    await offline.mirrored();
    await plain.mirrored();
    // The gateway ran before the outage: its logins succeeded upstream through the proxies, and it read.
    for (const proxy of [offline, plain]) {
      for (const [name, password] of [['apisix', 'apisix-pw'], ['nobody', 'nobody-pw']] as const) {
        const online = await login(proxy.url, name, password);
        assert.equal(online.status, 200, online.text);
        const read = await readPrefix(proxy.url, online.token);
        assert.equal(read.status, name === 'apisix' ? 200 : 403, read.text);
      }
    }
  });
  after(async () => {
    await offline?.stop();
    await plain?.stop();
    await etcd?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps only a hash of the password, in a file only the proxy may read', async () => {
    const file = join(dataDir, 'offline-logins.json');
    await until('the login to be remembered', async () => {
      try {
        return statSync(file).size > 0;
      } catch {
        return false;
      }
    });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = (await import('node:fs')).readFileSync(file, 'utf8');
    assert.doesNotMatch(text, /apisix-pw|nobody-pw/);
    assert.match(text, /"apisix"/);
  });

  it('answers the login itself while etcd is down, and serves the prefix and a watch with its own token', async () => {
    etcd.signal('SIGKILL');
    await until('both proxies to call the upstream lost', async () => (await offline.metrics.upstreamUp.get()).values[0]?.value === 0 && (await plain.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);

    const withoutOption = await login(plain.url, 'apisix', 'apisix-pw');
    assert.equal(withoutOption.status, 503, `without --auth-offline-login a login fails as with etcd down: ${withoutOption.text}`);

    const granted = await login(offline.url, 'apisix', 'apisix-pw');
    assert.equal(granted.status, 200, granted.text);
    assert.match(granted.token, /^etcd-cache-proxy\./);
    const read = await readPrefix(offline.url, granted.token);
    assert.deepEqual({ status: read.status, keys: read.keys }, { status: 200, keys: ['/apisix/routes/1', '/apisix/upstreams/1'] }, read.text);
    const watch = new HttpStream(offline.url, '/v3/watch', { body: JSON.stringify({ create_request: { key: b64('/apisix/'), range_end: b64('/apisix0') } }), keepOpen: true, headers: { Authorization: granted.token } });
    try {
      const created = await watch.waitUntil('the watch to be created', (o) => (o.result as { created?: boolean } | undefined)?.created === true);
      assert.notEqual((created.result as { canceled?: boolean }).canceled, true, JSON.stringify(created));
    } finally {
      watch.endBody();
    }

    for (const [name, password, why] of [
      ['apisix', 'wrong', 'a wrong password'],
      ['stranger', 'apisix-pw', 'an unknown user'],
    ] as const) {
      const refused = await login(offline.url, name, password);
      assert.equal(refused.status, 400, `${why}: ${refused.text}`);
      assert.match(refused.text, /authentication failed, invalid user ID or password/, why);
    }
    const nobody = await login(offline.url, 'nobody', 'nobody-pw');
    assert.equal(nobody.status, 200, nobody.text);
    const denied = await readPrefix(offline.url, nobody.token);
    assert.equal(denied.status, 403, denied.text);
    assert.match(denied.text, /permission denied/);
  });

  it('gives no token to a concurrent burst of wrong passwords with the right one last, on two connections', async () => {
    const verdicts = await offlineBurst(offline.address);
    assert.deepEqual(verdicts.filter((v) => v.token !== ''), [], JSON.stringify(verdicts.slice(-3)));
    assert.ok(verdicts.every((v) => /authentication failed/.test(v.details)), JSON.stringify(verdicts.find((v) => !/authentication failed/.test(v.details))));
  });

  it("ends its own tokens once etcd answers again: the client gets etcd's invalid auth token and logs in with etcd", async () => {
    const granted = await login(offline.url, 'nobody', 'nobody-pw');
    assert.equal(granted.status, 200, granted.text);
    await etcd.restart();
    await until('the proxy to see etcd again', async () => (await offline.metrics.upstreamUp.get()).values[0]?.value === 1, 20_000);
    const read = await readPrefix(offline.url, granted.token);
    assert.equal(read.status, 401, read.text);
    assert.match(read.text, /invalid auth token/);
    // A write, which only etcd answers, is refused the same way: the proxy's token never goes upstream.
    const write = await httpCall(offline.url, '/v3/kv/put', JSON.stringify({ key: b64('/apisix/routes/2'), value: b64('{}') }), { headers: { Authorization: granted.token } });
    assert.equal(write.status, 401, write.text);
    assert.match(write.text, /invalid auth token/);
    const again = await login(offline.url, 'apisix', 'apisix-pw');
    assert.equal(again.status, 200, again.text);
    assert.doesNotMatch(again.token, /^etcd-cache-proxy\./, 'issued by etcd');
    assert.equal((await readPrefix(offline.url, again.token)).status, 200);
  });
});

/** 39 wrong passwords for apisix, then the right one, sent at once over two gRPC connections (with --workers, two processes). */
async function offlineBurst(address: string): Promise<{ token: string; details: string }[]> {
  const clients = [authClient(address), authClient(address)];
  try {
    const passwords = [...Array.from({ length: 39 }, (_, i) => `wrong-${i}`), 'apisix-pw'];
    const answers = await Promise.all(
      passwords.map((password, i) => call<{ token?: string }>(clients[i < 20 ? 0 : 1] as Client, 'Authenticate', { name: 'apisix', password })),
    );
    return answers.map((a) => ({ token: a.response?.token ?? '', details: a.error?.details ?? '' }));
  } finally {
    for (const client of clients) client.close();
  }
}

describe('offline logins with --workers 2: the budget is the primary\'s, shared by both', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  let dataDir: string;

  before(async () => {
    etcd = await startEtcd();
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-offline-workers-'));
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'apisix-reader', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READ' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        { name: 'apisix', password: 'apisix-pw', roles: ['apisix-reader'] },
        { name: 'mirror', password: 'mirror-pw', roles: ['mirror-reader'] },
      ],
    );
    proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--user', MIRROR_USER, '--auth-offline-login', '--upstream-timeout', '1s'], { dataDir });
    assert.equal((await login(`http://${proxy.address}`, 'apisix', 'apisix-pw')).status, 200);
    // Every worker reads the one file of offline logins.
    await until('the login to be remembered', () => existsSync(join(dataDir, 'offline-logins.json')) && readFileSync(join(dataDir, 'offline-logins.json'), 'utf8').includes('"apisix"'));
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('gives no token to the burst', async () => {
    etcd.signal('SIGKILL');
    await until('the proxy to call the upstream lost', async () => /^etcd_cache_proxy_upstream_up 0$/m.test(await (await fetch(`http://${proxy.address}/metrics`)).text()), 15_000, 100);
    const verdicts = await offlineBurst(proxy.address);
    assert.deepEqual(verdicts.filter((v) => v.token !== ''), [], JSON.stringify(verdicts.slice(-3)));
  });
});
