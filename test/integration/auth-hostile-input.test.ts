// Integration (real etcd 3.4 with auth on, simple tokens, bcrypt cost 4 so
// that 10 000 logins take seconds; the proxy run as the CLI, its output
// captured): what anonymous or low-privilege clients send cannot grow the
// proxy's state or log without bound, nor lock others out. 10 000 logins by
// one user push out no other user's token; a 50 MB user name is refused
// (online by etcd, offline by the proxy) without being stored or logged
// whole; junk offline logins from one source (127.0.0.2) lock out no other
// user's correct offline login from another source.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authClient, enableAuth, withToken } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { httpCall } from '../support/http-gateway';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const HUGE_NAME = 'n'.repeat(50 * 1024 * 1024);
const LOGINS = Number(process.env.HOSTILE_LOGINS ?? 10_000);

describe('hostile input to the auth side', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  let proxied: RawClients;
  let dataDir: string;
  let otherToken: string;

  const url = (): string => `http://${proxy.address}`;
  const login = async (name: string, password: string, localAddress?: string): Promise<{ status: number; token: string; text: string }> => {
    const answer = await httpCall(url(), '/v3/auth/authenticate', JSON.stringify({ name, password }), { timeoutMs: 60_000, ...(localAddress === undefined ? {} : { localAddress }) });
    return { status: answer.status, token: (answer.json as { token?: string } | undefined)?.token ?? '', text: answer.text.slice(0, 300) };
  };
  const readWith = async (token: string): Promise<{ details: string | null; values: string[] }> => {
    const outcome = await call<{ kvs?: { value: Buffer }[] }>(proxied.kv, 'Range', { key: b('r/1'), serializable: true }, { metadata: withToken(token) });
    return { details: outcome.error?.details ?? null, values: (outcome.response?.kvs ?? []).map((kv) => kv.value.toString()) };
  };
  /** What the proxy wrote, and the file of offline logins: neither may hold the huge name. */
  const assertHugeNameNowhere = (): void => {
    const output = proxy.stdout() + proxy.stderr();
    assert.ok(output.length < 256 * 1024, `${output.length} bytes of output`);
    assert.doesNotMatch(output, /n{65}/, 'at most 64 characters of a name are logged');
    const file = join(dataDir, 'offline-logins.json');
    if (existsSync(file)) assert.doesNotMatch(readFileSync(file, 'utf8'), /n{256}/);
  };

  before(async () => {
    etcd = await startEtcd({ extraArgs: ['--bcrypt-cost', '4'] });
    const direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: b('r/1'), value: b('one') })).error, null);
    direct.close();
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'reader', permissions: [{ key: 'r/', rangeEnd: 'r0', type: 'READ' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        { name: 'busy', password: 'busy-pw', roles: [] },
        { name: 'other', password: 'other-pw', roles: ['reader'] },
        { name: 'mirror', password: 'mirror-pw', roles: ['mirror-reader'] },
      ],
    );
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-hostile-'));
    proxy = await startProxyProcess([etcd.clientUrl], ['--user', 'mirror:mirror-pw', '--auth-offline-login', '--upstream-timeout', '1s'], { dataDir });
    proxied = rawClients(proxy.address);
    const other = await login('other', 'other-pw');
    assert.equal(other.status, 200, other.text);
    otherToken = other.token;
    await until('the proxy to serve other from its mirror', async () => (await readWith(otherToken)).values[0] === 'one');
    await until('the login to be remembered', () => existsSync(join(dataDir, 'offline-logins.json')) && readFileSync(join(dataDir, 'offline-logins.json'), 'utf8').includes('"other"'));
  });
  after(async () => {
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a 50 MB user name while etcd answers, without storing or logging it', async () => {
    const answer = await login(HUGE_NAME, 'pw');
    assert.notEqual(answer.status, 200, answer.text);
    assertHugeNameNowhere();
  });

  it("keeps another user's token through 10 000 logins of one user", async () => {
    const clients = Array.from({ length: 8 }, () => authClient(proxy.address));
    try {
      let next = 0;
      await Promise.all(
        Array.from({ length: 40 }, async (_, worker) => {
          while (next < LOGINS) {
            next += 1;
            const outcome = await call<{ token: string }>(clients[worker % clients.length] ?? clients[0]!, 'Authenticate', { name: 'busy', password: 'busy-pw' });
            assert.equal(outcome.error, null, outcome.error?.details);
          }
        }),
      );
    } finally {
      for (const client of clients) client.close();
    }
    etcd.signal('SIGKILL');
    await until('the proxy to call the upstream lost', async () => /^etcd_cache_proxy_upstream_up 0$/m.test(await (await fetch(`${url()}/metrics`)).text()), 15_000, 100);
    // During the outage only what the proxy remembers serves: other's token is still known.
    assert.deepEqual(await readWith(otherToken), { details: null, values: ['one'] });
  });

  it('refuses a 50 MB user name while etcd is down, without storing or logging it', async () => {
    const answer = await login(HUGE_NAME, 'pw');
    assert.equal(answer.status, 400, answer.text);
    assert.match(answer.text, /authentication failed/);
    assertHugeNameNowhere();
  });

  it("lets junk offline logins from one source lock out no other user's correct login from another", async () => {
    const junk = await Promise.all(Array.from({ length: 60 }, (_, i) => login(`junk-${i}`, 'x', '127.0.0.2').catch((error: unknown) => ({ status: -1, token: '', text: `${String(error)} ${proxy.stdout().slice(-3000)}` }))));
    assert.ok(junk.every((answer) => answer.status === 400), JSON.stringify(junk.find((answer) => answer.status !== 400)));
    const granted = await login('other', 'other-pw', '127.0.0.1');
    assert.equal(granted.status, 200, granted.text);
    assert.match(granted.token, /^etcd-cache-proxy\./);
    assert.deepEqual(await readWith(granted.token), { details: null, values: ['one'] });
    assert.doesNotMatch(proxy.stdout() + proxy.stderr(), /junk-5\d/, 'refusals are not logged one line each');
  });
});
