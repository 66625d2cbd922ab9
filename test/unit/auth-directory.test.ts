// Unit (no network: a fake etcd member answers the directory's calls as
// etcd 3.4 does, and the clock is mocked): validity is per token and fails
// closed. A token etcd stops taking is refused within one refresh interval
// even while another token of the same user is in constant use; a check
// that fails leaves the read to etcd; a forgotten token is told to the other
// serving processes; one user's 10 000 logins push out none of another
// user's tokens; a JWT issued before the auth store's last known revision is
// refused during an outage; the proxy's own tokens end when etcd answers and
// at their maximum age.
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { Metadata, status, type Client } from '@grpc/grpc-js';
import pino from 'pino';
import { Registry } from 'prom-client';
import { after, before, beforeEach, describe, it, mock } from 'node:test';
import { AuthDirectory, type KeyRangeAsked } from '../../src/auth/directory';
import { JwtVerifier } from '../../src/auth/jwt';
import { createMetrics } from '../../src/metrics';
import type { UpstreamPool } from '../../src/upstream/pool';

const INTERVAL = 1_000;
const log = pino({ level: 'silent' });
const routes: KeyRangeAsked[] = [{ key: Buffer.from('/apisix/routes/1'), rangeEnd: Buffer.alloc(0) }];

/** A member as etcd 3.4 answers: tokens it knows (and their user), JWTs at or past the auth revision, one role reading /apisix/. */
class FakeEtcd {
  readonly tokens = new Map<string, string>();
  authRevision = 1;
  down = false;
  calls = 0;
  readonly jwtRevision = new Map<string, number>();
  /** What the one role may read. */
  readable = { key: '/apisix/', rangeEnd: '/apisix0' };

  client(): Client {
    const fake = {
      makeUnaryRequest: (path: string, _ser: unknown, _de: unknown, request: { name?: string }, metadata: Metadata, _options: unknown, callback: (error: unknown, response?: unknown) => void) => {
        this.calls += 1;
        const fail = (code: status, details: string): void => {
          setImmediate(() => callback(Object.assign(new Error(details), { code, details, metadata: new Metadata() })));
        };
        const answer = (response: object): void => {
          setImmediate(() => callback(null, response));
        };
        if (this.down) return fail(status.UNAVAILABLE, 'connection refused');
        const token = String(metadata.get('token')[0] ?? '');
        const user = this.tokens.get(token);
        if (user === undefined) return fail(status.UNAUTHENTICATED, 'etcdserver: invalid auth token');
        const revision = this.jwtRevision.get(token);
        if (path.endsWith('/Range') && revision !== undefined && revision < this.authRevision) return fail(status.INVALID_ARGUMENT, 'etcdserver: revision of auth store is old');
        if (path.endsWith('/UserGet')) return answer({ roles: ['reader'] });
        if (path.endsWith('/RoleGet')) return answer({ perm: [{ permType: 'READ', key: Buffer.from(this.readable.key), range_end: Buffer.from(this.readable.rangeEnd) }] });
        void request;
        return answer({ count: '0' });
      },
    };
    return fake as unknown as Client;
  }
}

function withToken(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set('token', token);
  return metadata;
}

function directoryFor(etcd: FakeEtcd, lost: { value: boolean }, jwt: JwtVerifier | null = null): AuthDirectory {
  const member = { client: etcd.client(), endpoint: { url: 'http://fake:2379' } };
  const pool = { candidates: () => [member] } as unknown as UpstreamPool;
  return new AuthDirectory(pool, INTERVAL, log, () => lost.value, createMetrics(new Registry()), null, jwt);
}

describe('the auth directory', () => {
  before(() => mock.timers.enable({ apis: ['Date'], now: 1_800_000_000_000 }));
  after(() => mock.timers.reset());
  let etcd: FakeEtcd;
  const lost = { value: false };
  beforeEach(() => {
    etcd = new FakeEtcd();
    lost.value = false;
  });

  it('refuses a token etcd dropped within one refresh interval, while another token of its user is in constant use', async () => {
    const directory = directoryFor(etcd, lost);
    const told: string[] = [];
    directory.tellTo({ share: () => undefined, forget: (token) => told.push(token), authRevision: () => undefined });
    for (const token of ['old', 'new']) {
      etcd.tokens.set(token, 'apisix');
      directory.learn('apisix', token);
    }
    assert.deepEqual(await directory.decide(withToken('old'), routes), { kind: 'permit' });
    // The password changes: etcd drops the old token; the new one is used every 100 ms (it keeps the user's permissions fresh).
    etcd.tokens.delete('old');
    for (let t = 0; t < INTERVAL; t += 100) {
      mock.timers.tick(100);
      assert.deepEqual(await directory.decide(withToken('new'), routes), { kind: 'permit' });
    }
    // One interval after etcd last took it, the old token is asked about again before it is served: etcd decides.
    assert.deepEqual(await directory.decide(withToken('old'), routes), { kind: 'forward' });
    assert.deepEqual(told, ['old'], 'the other serving processes are told');
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken('old'), routes), { kind: 'refuse', error: 'invalidAuthToken' }, 'forgotten: refused during an outage');
    assert.deepEqual(await directory.decide(withToken('new'), routes), { kind: 'permit' });
  });

  it('keeps a token fresh from the reads etcd answers itself, so an outage decides with what etcd said last', async () => {
    const directory = directoryFor(etcd, lost);
    etcd.tokens.set('t', 'apisix');
    directory.learn('apisix', 't');
    assert.deepEqual(await directory.decide(withToken('t'), routes), { kind: 'permit' });
    // The role loses /apisix/ while the client's reads all go to etcd (linearizable reads of a mirror of some ranges).
    etcd.readable = { key: '/other/', rangeEnd: '/other0' };
    mock.timers.tick(INTERVAL + 1);
    const before = etcd.calls;
    directory.keepFresh(withToken('t'));
    for (let i = 0; i < 20 && etcd.calls - before < 3; i += 1) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
    assert.ok(etcd.calls - before >= 3, 'the token checked and the permissions read again');
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken('t'), routes), { kind: 'refuse', error: 'permissionDenied' }, 'the revoked permission holds through the outage');
  });

  it('does not serve past the refresh interval what etcd could not confirm', async () => {
    const directory = directoryFor(etcd, lost);
    etcd.tokens.set('t', 'apisix');
    directory.learn('apisix', 't');
    assert.deepEqual(await directory.decide(withToken('t'), routes), { kind: 'permit' });
    etcd.down = true; // answers with errors, but liveness still calls it up
    mock.timers.tick(INTERVAL / 2);
    assert.deepEqual(await directory.decide(withToken('t'), routes), { kind: 'permit' }, 'within the interval');
    mock.timers.tick(INTERVAL / 2);
    assert.deepEqual(await directory.decide(withToken('t'), routes), { kind: 'forward' }, 'past it: etcd decides');
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken('t'), routes), { kind: 'permit' }, 'not forgotten: served as last known during an outage');
  });

  it('checks each token in use about once per interval, whatever the number of reads', async () => {
    const directory = directoryFor(etcd, lost);
    etcd.tokens.set('t', 'apisix');
    directory.learn('apisix', 't');
    await directory.decide(withToken('t'), routes);
    const before = etcd.calls;
    for (let i = 0; i < 1_000; i += 1) {
      if (i % 100 === 0) mock.timers.tick(100);
      await directory.decide(withToken('t'), routes);
    }
    // 1 s of reads: about one token check and one permission read (UserGet, RoleGet) each in the background.
    assert.ok(etcd.calls - before <= 8, `${etcd.calls - before} calls to etcd for 1 000 reads`);
  });

  it("keeps another user's token through 10 000 logins of one user", async () => {
    const directory = directoryFor(etcd, lost);
    etcd.tokens.set('other', 'other-user');
    directory.learn('other-user', 'other');
    assert.deepEqual(await directory.decide(withToken('other'), routes), { kind: 'permit' });
    for (let i = 0; i < 10_000; i += 1) directory.learn('busy', `busy-${i}`);
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken('other'), routes), { kind: 'permit' }, 'still known');
    assert.deepEqual(await directory.decide(withToken('busy-9999'), routes), { kind: 'refuse', error: 'invalidAuthToken' }, 'no permissions known for busy: refused');
  });

  it('never keeps a token or a name longer than the proxy keeps', async () => {
    const directory = directoryFor(etcd, lost);
    const long = 'x'.repeat(5_000);
    etcd.tokens.set(long, 'apisix');
    directory.learn('apisix', long);
    directory.learn('n'.repeat(300), 'short');
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken(long), routes), { kind: 'refuse', error: 'invalidAuthToken' });
    assert.deepEqual(await directory.decide(withToken('short'), routes), { kind: 'refuse', error: 'invalidAuthToken' });
  });

  it('refuses during an outage a JWT issued before the auth revision etcd was last seen at', async () => {
    const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwt = new JwtVerifier(keys.publicKey.export({ type: 'spki', format: 'pem' }));
    const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
    const issue = (revision: number): string => {
      const input = `${part({ alg: 'RS256' })}.${part({ username: 'apisix', revision, exp: Date.now() / 1000 + 600 })}`;
      return `${input}.${sign('sha256', Buffer.from(input), keys.privateKey).toString('base64url')}`;
    };
    const directory = directoryFor(etcd, lost, jwt);
    const stale = issue(1);
    etcd.tokens.set(stale, 'apisix');
    etcd.jwtRevision.set(stale, 1);
    assert.deepEqual(await directory.decide(withToken(stale), routes), { kind: 'permit' }, 'a JWT whose login it never saw, taken by etcd');
    // A role changes (auth revision 2); a client logs in again at etcd and reads through the proxy.
    etcd.authRevision = 2;
    const fresh = issue(2);
    etcd.tokens.set(fresh, 'apisix');
    etcd.jwtRevision.set(fresh, 2);
    assert.deepEqual(await directory.decide(withToken(fresh), routes), { kind: 'permit' });
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken(stale), routes), { kind: 'refuse', error: 'authOldRevision' });
    assert.deepEqual(await directory.decide(withToken(fresh), routes), { kind: 'permit' });
  });

  it("ends the proxy's own tokens when etcd answers again, and at their maximum age", async () => {
    const directory = directoryFor(etcd, lost);
    etcd.tokens.set('t', 'apisix');
    directory.learn('apisix', 't');
    await directory.decide(withToken('t'), routes);
    lost.value = true;
    const aged = directory.issueProxyToken('apisix', Date.now() + 2_000);
    const other = directory.issueProxyToken('apisix', Date.now() + 60_000);
    assert.deepEqual(await directory.decide(withToken(aged), routes), { kind: 'permit' });
    mock.timers.tick(2_000);
    assert.deepEqual(await directory.decide(withToken(aged), routes), { kind: 'refuse', error: 'invalidAuthToken' }, 'past its maximum age, etcd still away');
    assert.deepEqual(await directory.decide(withToken(other), routes), { kind: 'permit' });
    lost.value = false;
    assert.deepEqual(await directory.decide(withToken(other), routes), { kind: 'refuse', error: 'invalidAuthToken' }, 'etcd answers: over');
    lost.value = true;
    assert.deepEqual(await directory.decide(withToken(other), routes), { kind: 'refuse', error: 'invalidAuthToken' }, 'and stays over in the next outage');
  });
});
