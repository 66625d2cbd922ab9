// Unit test (no etcd: the upstream is lost throughout, so nothing is asked of
// it): the proxy's own tokens, issued during an outage, expire after 5 idle
// minutes; with --workers each serving process keeps its own idle clock, and
// a token in use in one must not expire in another.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import pino from 'pino';
import { Registry } from 'prom-client';
import { after, before, mock, test } from 'node:test';
import { AuthDirectory, type KeyRangeAsked, type SharedToken } from '../../src/auth/directory';
import { LoginLimiter } from '../../src/auth/login-limits';
import { OfflineLogins, OFFLINE_LOGINS_FILE } from '../../src/auth/offline-logins';
import { createMetrics } from '../../src/metrics';
import type { UpstreamPool } from '../../src/upstream/pool';

const MINUTE = 60_000;
const log = pino({ level: 'silent' });
const routes: KeyRangeAsked[] = [{ key: Buffer.from('/apisix/routes/1'), rangeEnd: Buffer.alloc(0) }];
/** Never called: with the upstream lost, the directory asks etcd nothing. */
const noPool = {} as UpstreamPool;

function withToken(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set('token', token);
  return metadata;
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ecp-token-idle-'));
  mock.timers.enable({ apis: ['Date'], now: Date.now() });
});
after(() => {
  mock.timers.reset();
  rmSync(dir, { recursive: true, force: true });
});

async function servingProcess(): Promise<AuthDirectory> {
  // Every serving process opens the one file of offline logins and permissions, as workers do.
  const offline = await OfflineLogins.open(join(dir, OFFLINE_LOGINS_FILE), 24 * 60 * MINUTE, log, new LoginLimiter());
  return new AuthDirectory(noPool, 5 * MINUTE, log, () => true, createMetrics(new Registry()), offline, null);
}

test('a proxy token used in one serving process stays good in another; unused everywhere, it goes after 5 minutes', async () => {
  const writer = await OfflineLogins.open(join(dir, OFFLINE_LOGINS_FILE), 24 * 60 * MINUTE, log, new LoginLimiter());
  await writer.remember('apisix', 'apisix-pw');
  await writer.rememberPermissions('apisix', [{ key: Buffer.from('/apisix/'), rangeEnd: Buffer.from('/apisix0'), type: 'READ' }], false);
  const [first, second] = [await servingProcess(), await servingProcess()];
  // What the primary does: whatever one process learns, it tells the other.
  const tellTo = (other: AuthDirectory) => ({ share: (token: SharedToken) => other.adopt(token), forget: (token: string) => other.adoptForget(token), authRevision: () => undefined });
  first.tellTo(tellTo(second));
  second.tellTo(tellTo(first));

  const token = first.issueProxyToken('apisix', Date.now() + 60 * MINUTE);
  assert.deepEqual(await second.decide(withToken(token), routes), { kind: 'permit' }, 'known in the other process at once');
  // The client's connection stays on the first process and reads every minute for six minutes.
  for (let minute = 1; minute <= 6; minute += 1) {
    mock.timers.tick(MINUTE);
    assert.deepEqual(await first.decide(withToken(token), routes), { kind: 'permit' }, `minute ${minute}`);
  }
  // Then its next connection lands on the second process, which has not seen it used for six minutes.
  assert.deepEqual(await second.decide(withToken(token), routes), { kind: 'permit' }, 'still good in the process where it was not used');

  mock.timers.tick(5 * MINUTE + 1);
  for (const directory of [first, second]) {
    assert.deepEqual(await directory.decide(withToken(token), routes), { kind: 'refuse', error: 'invalidAuthToken' }, 'idle for 5 minutes everywhere');
  }
});
