// Integration (real etcd 3.4 with auth on, simple tokens; refresh interval
// 1 s): validity is per token. A user's password changes, or the user is
// deleted, while a second token of the same user is read with every 50 ms
// (which keeps that user's permissions fresh in the proxy): the first read
// with the old token made once one refresh interval has passed since the
// change gets etcd's own answer (invalid auth token), never the mirror's
// data. The proxy serves a token only while etcd took that very token within
// the interval, so this holds by construction, not by timing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { authClient, authenticate, enableAuth, logInAll, ROOT_PASSWORD, withToken } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { sleep, until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const REFRESH_MS = 1_000;
const read = { key: b('r/1'), serializable: true };

interface Seen {
  readonly details: string | null;
  readonly values: string[];
}

async function rangeSeen(clients: RawClients, token: string): Promise<Seen> {
  const outcome = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', read, { metadata: withToken(token) });
  return { details: outcome.error?.details ?? null, values: (outcome.response?.kvs ?? []).map((kv) => kv.value.toString()) };
}

describe('a token etcd dropped, while another token of its user is in constant use', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: b('r/1'), value: b('one') })).error, null);
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'reader', permissions: [{ key: 'r/', rangeEnd: 'r0', type: 'READ' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        { name: 'u-moved', password: 'old-pw', roles: ['reader'] },
        { name: 'u-deleted', password: 'del-pw', roles: ['reader'] },
        { name: 'mirror', password: 'mirror-pw', roles: ['mirror-reader'] },
      ],
    );
    proxy = await startTestProxy([etcd.clientUrl], ['--user', 'mirror:mirror-pw', '--auth-refresh-interval', `${REFRESH_MS}ms`]);
    await proxy.mirrored(2);
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  /** Reads with `token()` every 50 ms until stopped. */
  function keepReading(token: () => string): { stop(): Promise<void> } {
    let running = true;
    const loop = (async () => {
      while (running) {
        await rangeSeen(proxied, token());
        await sleep(50);
      }
    })();
    return {
      async stop() {
        running = false;
        await loop;
      },
    };
  }

  async function asRoot(method: string, request: object): Promise<void> {
    const root = authClient(etcd.clientAddress);
    try {
      const outcome = await call(root, method, request, { metadata: withToken(await authenticate(root, 'root', ROOT_PASSWORD)) });
      assert.equal(outcome.error, null, outcome.error?.details);
    } finally {
      root.close();
    }
  }

  /** The first read with `token` once one refresh interval has passed since `changedAt`: etcd's answer, never the mirror's data. */
  async function refusedAfterOneInterval(token: string, changedAt: number): Promise<void> {
    await until('one refresh interval to pass since the change', () => Date.now() >= changedAt + REFRESH_MS + 20, 5_000, 10);
    const [fromProxy, fromEtcd] = [await rangeSeen(proxied, token), await rangeSeen(direct, token)];
    assert.deepEqual(fromEtcd, { details: 'etcdserver: invalid auth token', values: [] });
    assert.deepEqual(fromProxy, fromEtcd);
  }

  it('refuses the old token after a password change, while the user reads with a new one', async () => {
    const tokens = await logInAll(proxy.address, [{ name: 'u-moved', password: 'old-pw' }]);
    const old = tokens.get('u-moved') ?? '';
    assert.deepEqual(await rangeSeen(proxied, old), { details: null, values: ['one'] });
    let current = (await logInAll(proxy.address, [{ name: 'u-moved', password: 'old-pw' }])).get('u-moved') ?? '';
    const reader = keepReading(() => current);
    try {
      await asRoot('UserChangePassword', { name: 'u-moved', password: 'new-pw' });
      const changedAt = Date.now();
      current = (await logInAll(proxy.address, [{ name: 'u-moved', password: 'new-pw' }])).get('u-moved') ?? '';
      assert.deepEqual(await rangeSeen(proxied, current), { details: null, values: ['one'] }, 'the new token is served');
      await refusedAfterOneInterval(old, changedAt);
    } finally {
      await reader.stop();
    }
  });

  it("refuses a deleted user's token, while another of its tokens is read with all along", async () => {
    const tokens = [...(await logInAll(proxy.address, [{ name: 'u-deleted', password: 'del-pw' }])).values(), ...(await logInAll(proxy.address, [{ name: 'u-deleted', password: 'del-pw' }])).values()];
    const [old, busy] = tokens as [string, string];
    assert.deepEqual(await rangeSeen(proxied, old), { details: null, values: ['one'] });
    const reader = keepReading(() => busy);
    try {
      await asRoot('UserDelete', { name: 'u-deleted' });
      const changedAt = Date.now();
      await refusedAfterOneInterval(old, changedAt);
      assert.deepEqual(await rangeSeen(proxied, busy), { details: 'etcdserver: invalid auth token', values: [] });
    } finally {
      await reader.stop();
    }
  });
});
