// Unit (no network; real scrypt on a temporary file): offline login attempts
// are reserved before the password is hashed, so a concurrent burst of wrong
// passwords with the right one among them gets no token; junk from one source
// locks out neither another source nor a user it did not try; the budgets'
// maps stay bounded whatever names arrive; a name too long to keep is refused
// before anything is stored or logged; a login etcd refuses with the kept
// password drops it.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { after, describe, it } from 'node:test';
import { ATTEMPTS_PER_SOURCE, ATTEMPTS_PER_USER, LoginLimiter, sourceOf } from '../../src/auth/login-limits';
import { OfflineLogins, OFFLINE_LOGINS_FILE } from '../../src/auth/offline-logins';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function logCapture(): { log: pino.Logger; text: () => string } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { log: pino({ level: 'debug' }, out), text: () => text };
}

async function loginsWith(users: [string, string][], log = pino({ level: 'silent' })): Promise<{ logins: OfflineLogins; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ecp-offline-limits-'));
  dirs.push(dir);
  const file = join(dir, OFFLINE_LOGINS_FILE);
  const logins = await OfflineLogins.open(file, 3_600_000, log, new LoginLimiter());
  for (const [name, password] of users) await logins.remember(name, password);
  return { logins, file };
}

describe('offline login limits', () => {
  it('gives no token to a concurrent burst of 39 wrong passwords and the right one', async () => {
    const { logins } = await loginsWith([['apisix', 'right']]);
    const attempts = [...Array.from({ length: 39 }, (_, i) => `wrong-${i}`), 'right'].map((password) => logins.verify('apisix', password, '10.0.0.1:5000'));
    const verdicts = await Promise.all(attempts);
    assert.equal(verdicts.filter((v) => v.kind === 'ok').length, 0);
    assert.equal(verdicts.filter((v) => v.kind === 'refused').length, ATTEMPTS_PER_USER, 'only the budget was hashed');
  });

  it('lets junk from one source lock out neither another user nor another source', async () => {
    const { logins } = await loginsWith([['apisix', 'right'], ['other', 'other-pw']]);
    const junk = await Promise.all(Array.from({ length: 50 }, (_, i) => logins.verify(`junk-${i}`, 'x', '10.0.0.66:1234')));
    assert.equal(junk.filter((v) => v.kind === 'throttled').length, 50 - ATTEMPTS_PER_SOURCE);
    assert.equal((await logins.verify('apisix', 'right', '10.0.0.1:5000')).kind, 'ok');
    assert.equal((await logins.verify('other', 'other-pw', '[::1]:5000')).kind, 'ok');
  });

  it('keeps the budgets bounded, and tracks no budget for names nobody can log in as', () => {
    const limiter = new LoginLimiter();
    for (let i = 0; i < 20_000; i += 1) limiter.reserveNow({ user: `junk-${i}`, source: `10.${i >> 8}.${i & 255}.1`, known: false });
    const tracked = limiter.tracked();
    assert.equal(tracked.users, 0);
    assert.ok(tracked.sources <= 4_096, `${tracked.sources} sources`);
    assert.equal(sourceOf('ipv4:127.0.0.2:4000'), '127.0.0.2');
    assert.equal(sourceOf('127.0.0.2:4000'), '127.0.0.2');
    assert.equal(sourceOf('[::ffff:127.0.0.1]:4000'), '127.0.0.1');
    assert.equal(sourceOf('::ffff:127.0.0.1:4000'), '127.0.0.1', "grpc-js's form");
    // IPv6: the /64, whatever the port or the host part.
    assert.equal(sourceOf('[::1]:4000'), '0:0:0:0::/64');
    assert.equal(sourceOf('2001:db8:1:2:aaaa::1:4000'), '2001:db8:1:2::/64');
    assert.equal(sourceOf('[2001:db8:1:2:bbbb:cccc:dddd:eeee]:5'), '2001:db8:1:2::/64');
  });

  it('refuses a 50 MB name before storing, hashing or logging it whole', async () => {
    const capture = logCapture();
    const { logins, file } = await loginsWith([['apisix', 'right']], capture.log);
    const name = 'n'.repeat(50 * 1024 * 1024);
    const before = readFileSync(file, 'utf8');
    assert.equal((await logins.verify(name, 'pw', '10.0.0.1:1')).kind, 'refused');
    await logins.remember(name, 'pw');
    assert.equal(readFileSync(file, 'utf8'), before, 'nothing stored');
    assert.ok(capture.text().length < 4_096, `${capture.text().length} bytes logged`);
    assert.match(capture.text(), /52428800 characters/);
  });

  it('hashes a password logged in with again and again once (logins cannot queue the hashing offline logins need)', async () => {
    const { logins } = await loginsWith([['apisix', 'right']]);
    const started = Date.now();
    await Promise.all(Array.from({ length: 1_000 }, () => logins.remember('apisix', 'right')));
    // 1 000 scrypt hashes take over 10 s on four threads; one, about 50 ms.
    assert.ok(Date.now() - started < 3_000, `${Date.now() - started} ms`);
    assert.equal((await logins.verify('apisix', 'right', '10.0.0.1:1')).kind, 'ok');
    await logins.remember('apisix', 'changed');
    assert.equal((await logins.verify('apisix', 'changed', '10.0.0.1:1')).kind, 'ok', 'another password is hashed');
  });

  it('drops the kept password once etcd refuses it (changed, or the user deleted); another password changes nothing', async () => {
    const { logins, file } = await loginsWith([['apisix', 'right']]);
    // Another serving process, which has the login in memory.
    const other = await OfflineLogins.open(file, 3_600_000, pino({ level: 'silent' }), new LoginLimiter());
    await logins.upstreamRefused('apisix', 'a guess');
    assert.equal((await logins.verify('apisix', 'right', '10.0.0.1:1')).kind, 'ok');
    await logins.upstreamRefused('apisix', 'right');
    assert.equal((await logins.verify('apisix', 'right', '10.0.0.1:1')).kind, 'refused');
    // The other process takes the drop, and does not write its copy back when it saves.
    await other.rememberPermissions('apisix', [], false);
    await other.reload();
    assert.equal((await other.verify('apisix', 'right', '10.0.0.2:1')).kind, 'refused');
  });
});
