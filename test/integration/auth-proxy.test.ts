// Integration (real etcd 3.4 with auth on, differential): a proxy whose
// mirror logs in as its own user (--user, read permission on everything)
// serves each client from the mirror exactly what etcd would serve it, and
// refuses exactly what etcd refuses, with etcd's code and message. Users log
// in through the proxy (which is how it learns whose token is whose) and
// read the same table of keys and ranges, by Range and by Txn, and watch,
// from etcd and through the proxy. One user's answer never reaches another
// user or a client without a token (the leak etcd's grpc-proxy has).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { READS, ROLES, USERS } from '../support/auth-plan';
import { authClient, authenticate, enableAuth, logInAll, ROOT_PASSWORD, withToken } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const MIRROR_USER = { name: 'mirror', password: 'mirror-pw' };
const KEYS = ['a/1', 'a/2', 'b/1', 'b/3', 'b/5', 'c/x', 'd/zzz', 'e/1', 'e/4', 'f/1', 'g/2', 'g/5', 'h/x', 'z'];

interface Seen {
  readonly code: number | null;
  readonly details: string | null;
  readonly values: string[];
}

async function rangeSeen(clients: RawClients, request: object, token: string | null): Promise<Seen> {
  const outcome = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', request, token === null ? {} : { metadata: withToken(token) });
  return { code: outcome.error?.code ?? null, details: outcome.error?.details ?? null, values: (outcome.response?.kvs ?? []).map((kv) => kv.value.toString()) };
}

describe('a proxy with its own user, in front of etcd with auth on', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;
  /** Tokens issued through the proxy, by user. */
  const tokens = new Map<string, string>();

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    for (const key of KEYS) assert.equal((await call(direct.kv, 'Put', { key: b(key), value: b(`v-${key}`) })).error, null);
    await enableAuth(
      etcd.clientAddress,
      [...ROLES, { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] }],
      [...USERS, { ...MIRROR_USER, roles: ['mirror-reader'] }],
    );
    proxy = await startTestProxy([etcd.clientUrl], ['--user', `${MIRROR_USER.name}:${MIRROR_USER.password}`]);
    await proxy.mirrored(KEYS.length + 1);
    proxied = rawClients(proxy.address);
    for (const [name, token] of await logInAll(proxy.address, USERS)) tokens.set(name, token);
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  const mirrorAnswers = async (): Promise<number> =>
    (await proxy.metrics.grpcRequests.get()).values.filter((v) => v.labels.source === 'mirror' && (v.labels.method === 'Range' || v.labels.method === 'Txn')).reduce((sum, v) => sum + v.value, 0);

  it('answers every user every Range and Txn of the table as etcd does, from the mirror', async () => {
    const differences: string[] = [];
    const before = await mirrorAnswers();
    let served = 0;
    for (const [user, token] of tokens) {
      for (const [key, rangeEnd] of READS) {
        for (const serializable of [true, false]) {
          // A single key leaves range_end out, as etcd's clients do (an empty one sent is another request: below).
          const request = { key: b(key), ...(rangeEnd === '' ? {} : { range_end: b(rangeEnd) }), serializable };
          const [fromEtcd, fromProxy] = [await rangeSeen(direct, request, token), await rangeSeen(proxied, request, token)];
          if (fromEtcd.code === null) served += 1;
          if (JSON.stringify(fromEtcd) !== JSON.stringify(fromProxy)) differences.push(`${user} ${JSON.stringify(request)}: etcd ${JSON.stringify(fromEtcd)}, proxy ${JSON.stringify(fromProxy)}`);
        }
        const range = { key: b(key), ...(rangeEnd === '' ? {} : { range_end: b(rangeEnd) }) };
        const txn = { compare: [{ ...range, target: 'VERSION', result: 'GREATER', version: '0' }], success: [{ request_range: { ...range, serializable: true } }] };
        const [fromEtcd, fromProxy] = [
          await call(direct.kv, 'Txn', txn, { metadata: withToken(token) }),
          await call(proxied.kv, 'Txn', txn, { metadata: withToken(token) }),
        ];
        const shape = (o: typeof fromEtcd): string => JSON.stringify({ code: o.error?.code, details: o.error?.details, succeeded: (o.response as { succeeded?: boolean } | undefined)?.succeeded });
        if (shape(fromEtcd) !== shape(fromProxy)) differences.push(`${user} txn ${key}..${rangeEnd}: etcd ${shape(fromEtcd)}, proxy ${shape(fromProxy)}`);
      }
    }
    assert.deepEqual(differences, []);
    assert.ok(served > 40, `${served} reads served by etcd`);
    assert.ok((await mirrorAnswers()) - before >= served, 'every read etcd served was answered by the mirror');
  });

  it('never hands one user\'s answer to a user who may not read it, or to a client without a token', async () => {
    const request = { key: b('c/'), range_end: b('c0'), serializable: true };
    const allowed = await rangeSeen(proxied, request, tokens.get('u-prefix') ?? '');
    assert.deepEqual(allowed.values, ['v-c/x']);
    const malformed: [string, string | null][] = [
      ['a forged token', 'forged.1'],
      ['a token of odd characters', '!! $$ %% ~'],
      ['a 6 KB token', 'x'.repeat(6_000)],
      ['a JWT with alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"username":"root","revision":1}').toString('base64url')}.`],
    ];
    for (const [who, token] of [['u-key', tokens.get('u-key') ?? ''], ['no token', null], ...malformed] as const) {
      const [fromEtcd, fromProxy] = [await rangeSeen(direct, request, token), await rangeSeen(proxied, request, token)];
      assert.notEqual(fromEtcd.code, null, who);
      assert.deepEqual(fromProxy, fromEtcd, who);
    }
  });

  it('creates or refuses watches as etcd does: history older than the mirror from etcd, live ones from the mirror', async () => {
    const cases: [string, string, string][] = [
      ['u-prefix', 'c/', 'c0'],
      ['u-prefix', 'd/', '\0'],
      ['u-two', 'e/1', 'e/6'],
      ['u-lower', 'e/1', 'e/6'],
      ['u-key', 'a/1', ''],
      ['u-none', 'a/1', ''],
    ];
    const root = authClient(etcd.clientAddress);
    const rootToken = await authenticate(root, 'root', ROOT_PASSWORD);
    root.close();
    const mirrorWatchers = async (): Promise<number> => (await proxy.metrics.watchers.get()).values.find((v) => v.labels.source === 'mirror')?.value ?? 0;
    for (const [start, label] of [[2, 'a replay older than the mirror'], [0, 'live']] as const) {
      for (const [user, key, rangeEnd] of cases) {
        const token = tokens.get(user) ?? '';
        const watches = [etcd.clientAddress, proxy.address].map((address) => new WatchClient(address, { metadata: { token }, ownConnection: true }));
        try {
          for (const watch of watches) watch.create({ key: b(key), ...(rangeEnd === '' ? {} : { range_end: b(rangeEnd) }), start_revision: start });
          const firsts = await Promise.all(watches.map((watch) => watch.next(`${user} ${key} (${label}): an answer`, (r) => r.created === true)));
          const permitted = firsts[0]?.canceled !== true;
          if (start === 0 && permitted) {
            assert.ok((await mirrorWatchers()) > 0, `${user} ${key}: the live watch is the mirror's`);
            const put = await call(direct.kv, 'Put', { key: b(key), value: b(`again-${user}`) }, { metadata: withToken(rootToken) });
            assert.equal(put.error, null);
          }
          const seen = await Promise.all(
            watches.map(async (watch, i) => {
              const first = firsts[i];
              const events = first?.canceled === true ? [] : ((await watch.next(`${user} ${key} (${label}): events`, (r) => (r.events ?? []).length > 0)).events ?? []);
              return { watch_id: first?.watch_id ?? '0', canceled: first?.canceled ?? false, cancel_reason: first?.cancel_reason ?? '', events: events.map((e) => `${e.kv?.key?.toString()}=${e.kv?.value?.toString()}`) };
            }),
          );
          assert.deepEqual(seen[1], seen[0], `${user} watching ${key}..${rangeEnd} (${label})`);
        } finally {
          for (const watch of watches) watch.close();
        }
      }
    }
  });

  it('leaves to etcd a range_end sent empty, which etcd reads as "to the end" but checks as one key', async () => {
    const request = { key: b('a/1'), range_end: Buffer.alloc(0), serializable: true };
    const token = tokens.get('u-key') ?? '';
    const [fromEtcd, fromProxy] = [await rangeSeen(direct, request, token), await rangeSeen(proxied, request, token)];
    assert.ok(fromEtcd.values.length > 1, 'etcd reads every key from a/1 on');
    assert.deepEqual(fromProxy, fromEtcd);
  });

  it('refuses as etcd does a client without a token (user name is empty)', async () => {
    const [fromEtcd, fromProxy] = [await rangeSeen(direct, { key: b('a/1'), serializable: true }, null), await rangeSeen(proxied, { key: b('a/1'), serializable: true }, null)];
    assert.deepEqual(fromEtcd, { code: status.INVALID_ARGUMENT, details: 'etcdserver: user name is empty', values: [] });
    assert.deepEqual(fromProxy, fromEtcd);
  });
});

describe('permissions that change, and an outage, under auth', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;
  const tokens = new Map<string, string>();
  const read = { key: b('r/1'), serializable: true };

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: b('r/1'), value: b('one') })).error, null);
    const plan = ['u-revoked', 'u-deleted', 'u-moved', 'u-outage', 'u-denied'];
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'reader', permissions: [{ key: 'r/', rangeEnd: 'r0', type: 'READ' }] },
        { name: 'revocable', permissions: [{ key: 'r/', rangeEnd: 'r0', type: 'READ' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        ...plan.map((name) => ({ name, password: `${name}-pw`, roles: name === 'u-revoked' ? ['revocable'] : name === 'u-denied' ? [] : ['reader'] })),
        { ...MIRROR_USER, roles: ['mirror-reader'] },
      ],
    );
    proxy = await startTestProxy([etcd.clientUrl], ['--user', `${MIRROR_USER.name}:${MIRROR_USER.password}`, '--auth-refresh-interval', '1s', '--upstream-timeout', '1s']);
    await proxy.mirrored(2);
    proxied = rawClients(proxy.address);
    for (const [name, token] of await logInAll(proxy.address, plan.map((name) => ({ name, password: `${name}-pw` })))) tokens.set(name, token);
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  /** Waits until the proxy answers `user`'s read as etcd now does, within the refresh interval and some slack. */
  async function followsEtcd(user: string, what: string): Promise<Seen> {
    const token = tokens.get(user) ?? '';
    let last: [Seen, Seen] | null = null;
    await until(
      () => `${user}: the proxy to answer as etcd after ${what}: ${JSON.stringify(last)}`,
      async () => {
        last = [await rangeSeen(direct, read, token), await rangeSeen(proxied, read, token)];
        return JSON.stringify(last[0]) === JSON.stringify(last[1]);
      },
      5_000,
      100,
    );
    return (last as unknown as [Seen, Seen])[0];
  }

  it('takes a revoked permission, a deleted user and a changed password into account within the refresh interval', async () => {
    for (const user of ['u-revoked', 'u-deleted', 'u-moved']) {
      assert.deepEqual(await rangeSeen(proxied, read, tokens.get(user) ?? ''), { code: null, details: null, values: ['one'] }, user);
    }
    const root = authClient(etcd.clientAddress);
    try {
      const asRoot = { metadata: withToken(await authenticate(root, 'root', ROOT_PASSWORD)) };
      assert.equal((await call(root, 'RoleRevokePermission', { role: 'revocable', key: b('r/'), range_end: b('r0') }, asRoot)).error, null);
      assert.equal((await call(root, 'UserDelete', { name: 'u-deleted' }, asRoot)).error, null);
      assert.equal((await call(root, 'UserChangePassword', { name: 'u-moved', password: 'another' }, asRoot)).error, null);
    } finally {
      root.close();
    }
    assert.equal((await followsEtcd('u-revoked', 'a revoked permission')).details, 'etcdserver: permission denied');
    assert.equal((await followsEtcd('u-deleted', 'the user was deleted')).details, 'etcdserver: invalid auth token');
    assert.equal((await followsEtcd('u-moved', 'a changed password')).details, 'etcdserver: invalid auth token');
  });

  it('while etcd is down: serves a known user what it may read, refuses the others as etcd would have', async () => {
    assert.deepEqual(await rangeSeen(proxied, read, tokens.get('u-outage') ?? ''), { code: null, details: null, values: ['one'] });
    assert.equal((await rangeSeen(proxied, read, tokens.get('u-denied') ?? '')).details, 'etcdserver: permission denied');
    etcd.signal('SIGKILL');
    await until('the proxy to call the upstream lost', async () => (await proxy.metrics.upstreamUp.get()).values[0]?.value === 0, 10_000);
    const served = await call<{ kvs?: { value: Buffer }[] }>(proxied.kv, 'Range', read, { metadata: withToken(tokens.get('u-outage') ?? '') });
    assert.equal(served.error, null);
    assert.equal(served.response?.kvs?.[0]?.value.toString(), 'one');
    assert.equal(served.headers?.get('x-etcd-cache-proxy-stale')[0], 'true');
    assert.deepEqual(await rangeSeen(proxied, read, tokens.get('u-denied') ?? ''), { code: status.PERMISSION_DENIED, details: 'etcdserver: permission denied', values: [] });
    assert.deepEqual(await rangeSeen(proxied, read, 'never-issued.7'), { code: status.UNAUTHENTICATED, details: 'etcdserver: invalid auth token', values: [] });
    assert.deepEqual(await rangeSeen(proxied, read, null), { code: status.INVALID_ARGUMENT, details: 'etcdserver: user name is empty', values: [] });
  });
});

describe('a proxy with its own user, in front of etcd without auth', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let proxied: RawClients;

  before(async () => {
    etcd = await startEtcd();
    const direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: b('open/1'), value: b('v') })).error, null);
    direct.close();
    proxy = await startTestProxy([etcd.clientUrl], ['--user', `${MIRROR_USER.name}:${MIRROR_USER.password}`]);
    await proxy.mirrored(2);
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('serves clients without a token from the mirror: its login told it auth is off', async () => {
    const mirrorAnswers = async (): Promise<number> =>
      (await proxy.metrics.grpcRequests.get()).values.filter((v) => v.labels.source === 'mirror' && v.labels.method === 'Range').reduce((sum, v) => sum + v.value, 0);
    const before = await mirrorAnswers();
    assert.deepEqual(await rangeSeen(proxied, { key: b('open/1'), serializable: true }, null), { code: null, details: null, values: ['v'] });
    assert.equal((await mirrorAnswers()) - before, 1);
  });
});
