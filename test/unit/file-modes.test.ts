// Unit (temporary directories, no network): what the proxy writes to disk
// is its user's alone. A fresh data dir is 0700 with LMDB's data.mdb and
// lock.mdb 0600; a data dir that existed with looser modes (0755, 0644
// files) is tightened at open, with one warning; snapshots, the APISIX
// export and offline-logins.json are written 0600 whatever the umask lets
// through; a read-only open (what workers and `snapshot save` do) changes
// nothing and still works.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { LoginLimiter } from '../../src/auth/login-limits';
import { OfflineLogins } from '../../src/auth/offline-logins';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import type { HeaderIdentity } from '../../src/etcd/records';
import { writeAtomically } from '../../src/files/atomic-file';
import { startPeriodicSnapshots } from '../../src/snapshot/periodic';
import { saveFromStore } from '../../src/snapshot/save';
import { openStore } from '../../src/store/store';

const identity: HeaderIdentity = { cluster_id: '1', member_id: '2', raft_term: '2' };
const modeOf = (path: string): number => statSync(path).mode & 0o777;
const octal = (mode: number): string => `0${mode.toString(8)}`;

/** Every entry under `dir` (itself included) with its mode, as "path 0600". */
function modes(dir: string): string[] {
  const found = [`. ${octal(modeOf(dir))}`];
  const walk = (path: string, name: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const child = join(path, entry.name);
      const shown = name === '' ? entry.name : `${name}/${entry.name}`;
      found.push(`${shown} ${octal(modeOf(child))}`);
      if (entry.isDirectory()) walk(child, shown);
    }
  };
  walk(dir, '');
  return found.sort();
}

/** A logger that keeps what it was told, to count warnings. */
function recordingLog(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
  return { log, lines };
}

describe('file modes', () => {
  let root: string;
  let umask: number;
  before(() => {
    // What a plain `npm start` usually runs with: files 0644 and directories 0755 unless asked otherwise.
    umask = process.umask(0o022);
    root = mkdtempSync(join(tmpdir(), 'ecp-modes-'));
  });
  after(() => {
    process.umask(umask);
    rmSync(root, { recursive: true, force: true });
  });

  it('a fresh data dir is 0700, data.mdb and lock.mdb 0600', async () => {
    const dataDir = join(root, 'fresh', 'data');
    const { log, lines } = recordingLog();
    const store = openStore(dataDir, { log });
    store.applyEvents([encodeEvent('PUT', encodeKeyValue({ key: Buffer.from('/a'), value: Buffer.from('1'), create_revision: 2, mod_revision: 2, version: 1, lease: '0' }))], identity);
    await store.close();
    assert.deepEqual(modes(dataDir), ['. 0700', 'mirror 0700', 'mirror/data.mdb 0600', 'mirror/lock.mdb 0600']);
    assert.equal(lines.filter((l) => l.level >= 40).length, 0, 'nothing to warn about');
  });

  it('a data dir that existed with 0755 and 0644 files is tightened at open, with one warning', async () => {
    const dataDir = join(root, 'old');
    const first = openStore(dataDir);
    await first.close();
    writeFileSync(join(dataDir, 'offline-logins.json'), '{"users":{}}');
    mkdirSync(join(dataDir, 'snapshots'));
    writeFileSync(join(dataDir, 'snapshots', 'etcd-cache-proxy.snapshot.jsonl'), '');
    for (const dir of [dataDir, join(dataDir, 'mirror'), join(dataDir, 'snapshots')]) chmodSync(dir, 0o755);
    for (const file of ['mirror/data.mdb', 'mirror/lock.mdb', 'offline-logins.json', 'snapshots/etcd-cache-proxy.snapshot.jsonl']) chmodSync(join(dataDir, file), 0o644);

    const { log, lines } = recordingLog();
    const store = openStore(dataDir, { log });
    await store.close();
    assert.deepEqual(modes(dataDir), [
      '. 0700',
      'mirror 0700',
      'mirror/data.mdb 0600',
      'mirror/lock.mdb 0600',
      'offline-logins.json 0600',
      'snapshots 0700',
      'snapshots/etcd-cache-proxy.snapshot.jsonl 0600',
    ]);
    const warnings = lines.filter((l) => l.level >= 40);
    assert.equal(warnings.length, 1, JSON.stringify(lines));
    assert.match(warnings[0]?.msg ?? '', /open to other users/);

    // Opened again: nothing left to tighten, nothing said.
    const again = recordingLog();
    await openStore(dataDir, { log: again.log }).close();
    assert.equal(again.lines.filter((l) => l.level >= 40).length, 0);

    // A read-only open (workers, `snapshot save --data-dir`) still works and changes nothing.
    chmodSync(join(dataDir, 'offline-logins.json'), 0o644);
    const reader = openStore(dataDir, { readOnly: true });
    assert.equal(reader.meta().revision, 0);
    await reader.close();
    assert.equal(modeOf(join(dataDir, 'offline-logins.json')), 0o644);
  });

  it('leaves a shared directory (sticky bit, like /tmp) as it is, and says so', async () => {
    const shared = join(root, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    writeFileSync(join(shared, 'someone-elses'), 'x');
    const { log, lines } = recordingLog();
    await openStore(shared, { log }).close();
    assert.equal(statSync(shared).mode & 0o7777, 0o1777);
    assert.equal(modeOf(join(shared, 'someone-elses')), 0o644);
    assert.equal(modeOf(join(shared, 'mirror')), 0o700, 'the mirror inside it is still private');
    assert.equal(modeOf(join(shared, 'mirror', 'data.mdb')), 0o600);
    assert.match(lines.find((l) => l.level >= 40)?.msg ?? '', /shared directory/);
  });

  it('writes snapshots, the APISIX export and offline logins 0600, also over a leftover temporary file', async () => {
    const dataDir = join(root, 'snap');
    const store = openStore(dataDir);
    store.applyEvents([encodeEvent('PUT', encodeKeyValue({ key: Buffer.from('/apisix/routes/1'), value: Buffer.from('{"uri":"/"}'), create_revision: 2, mod_revision: 2, version: 1, lease: '0' }))], identity);
    const out = join(root, 'out');
    mkdirSync(out);
    await saveFromStore(store, join(out, 'saved.jsonl'), 'mirror');
    assert.equal(modeOf(join(out, 'saved.jsonl')), 0o600);

    const leftover = join(out, `.plain.txt.${process.pid}.tmp`);
    writeFileSync(leftover, 'half', { mode: 0o666 });
    chmodSync(leftover, 0o666);
    await writeAtomically(join(out, 'plain.txt'), (w) => w.write('whole'));
    assert.equal(modeOf(join(out, 'plain.txt')), 0o600);

    const periodicDir = join(root, 'periodic');
    const results: string[] = [];
    const periodic = startPeriodicSnapshots({ store, dir: periodicDir, intervalMs: 60_000, apisixPrefix: '/apisix', log: pino({ level: 'silent' }), onSnapshot: (r) => results.push(r) });
    await periodic.runOnce();
    await periodic.close();
    assert.deepEqual(results, ['ok']);
    assert.deepEqual(modes(periodicDir), ['. 0700', 'apisix.yaml 0600', 'etcd-cache-proxy.snapshot.jsonl 0600']);
    await store.close();

    const logins = await OfflineLogins.open(join(dataDir, 'offline-logins.json'), 60_000, pino({ level: 'silent' }), new LoginLimiter());
    await logins.remember('alice', 'pw');
    assert.equal(modeOf(join(dataDir, 'offline-logins.json')), 0o600);
  });
});
