// Integration (real etcd 3.4, the CLI as an operator runs it, umask 022):
// after a plain start with a fresh data dir, the data dir and the mirror are
// 0700 and data.mdb, lock.mdb and the periodic snapshots 0600; a data dir
// left 0755 with 0644 files by an older version is tightened at start (one
// warning); `snapshot save` writes 0600; and workers, which open the mirror
// read-only, still serve reads from those 0600 files.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { runCliToExit, startProxyProcess } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const modeOf = (path: string): number => statSync(path).mode & 0o777;

/** Every path under `dir` (itself included) whose mode lets anyone but the owner in. */
function openToOthers(dir: string): string[] {
  const found = (modeOf(dir) & 0o077) !== 0 ? [dir] : [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...openToOthers(path));
    else if ((modeOf(path) & 0o077) !== 0) found.push(path);
  }
  return found;
}

describe('files only the proxy user can read', () => {
  let etcd: EtcdServer;
  let root: string;
  let umask: number;

  before(async () => {
    umask = process.umask(0o022);
    etcd = await startEtcd();
    root = mkdtempSync(join(tmpdir(), 'ecp-file-modes-'));
    const direct = rawClients(etcd.clientAddress);
    assert.equal((await call(direct.kv, 'Put', { key: b('/apisix/routes/1'), value: b('{"uri":"/"}') })).error, null);
    direct.close();
  });
  after(async () => {
    process.umask(umask);
    await etcd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('a plain start (two workers) with a fresh data dir: 0700 directories, 0600 files, snapshots included; reads served; snapshot save writes 0600', async () => {
    const dataDir = join(root, 'fresh', 'data');
    const snapshotDir = join(root, 'fresh', 'snapshots');
    const proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--snapshot-dir', snapshotDir, '--snapshot-interval', '1s'], { dataDir });
    const clients = rawClients(proxy.address);
    try {
      await until('a read served through the proxy', async () => {
        const read = await call<{ kvs?: unknown[] }>(clients.kv, 'Range', { key: b('/apisix/routes/1'), serializable: true }, { deadlineMs: 1_000 });
        return read.error === null && read.response?.kvs?.length === 1;
      });
      await until('the first periodic snapshot', () => existsSync(join(snapshotDir, 'apisix.yaml')));
      assert.equal(modeOf(dataDir), 0o700);
      assert.equal(modeOf(join(dataDir, 'mirror')), 0o700);
      assert.equal(modeOf(join(dataDir, 'mirror', 'data.mdb')), 0o600);
      assert.equal(modeOf(join(dataDir, 'mirror', 'lock.mdb')), 0o600);
      assert.deepEqual(openToOthers(dataDir), []);
      assert.equal(modeOf(snapshotDir), 0o700);
      assert.equal(modeOf(join(snapshotDir, 'etcd-cache-proxy.snapshot.jsonl')), 0o600);
      assert.equal(modeOf(join(snapshotDir, 'apisix.yaml')), 0o600);

      const file = join(root, 'saved.jsonl');
      const saved = await runCliToExit(['snapshot', 'save', file, '--data-dir', dataDir]);
      assert.equal(saved.code, 0, saved.stderr);
      assert.equal(modeOf(file), 0o600);
    } finally {
      clients.close();
      await proxy.stop();
    }
  });

  it('a data dir an older version left 0755 with 0644 files is tightened at start, with one warning', async () => {
    const dataDir = join(root, 'old');
    const first = await startProxyProcess([etcd.clientUrl], [], { dataDir });
    await first.stop();
    for (const dir of [dataDir, join(dataDir, 'mirror')]) chmodSync(dir, 0o755);
    for (const file of ['data.mdb', 'lock.mdb']) chmodSync(join(dataDir, 'mirror', file), 0o644);
    assert.notDeepEqual(openToOthers(dataDir), []);

    const proxy = await startProxyProcess([etcd.clientUrl], [], { dataDir });
    try {
      assert.deepEqual(openToOthers(dataDir), []);
      const warnings = proxy.stderr().split('\n').filter((line) => line.includes('open to other users'));
      assert.equal(warnings.length, 1, proxy.stderr());
      assert.match(warnings[0] ?? '', /"count":4/);
    } finally {
      await proxy.stop();
    }
  });
});
