// Integration (real etcd, the real CLI in its own process): snapshots of a
// live cluster and of a running proxy's mirror round-trip every KeyValue
// field; a restored data dir serves with etcd down; damaged files are refused
// whole; a proxy killed mid-snapshot leaves the previous snapshot intact; the
// APISIX export is a standalone apisix.yaml.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { openSnapshot, type SnapshotHeader } from '../../src/snapshot/format';
import { APISIX_FILE, SNAPSHOT_FILE } from '../../src/snapshot/periodic';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { until } from '../support/until';
import { runCliToExit, startProxyProcess, startTestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';

const b = (s: string): Buffer => Buffer.from(s);

interface WireKv {
  key: Buffer;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  value?: Buffer;
  lease?: string;
}

/** Every key with every field, as a comparable string per key. */
function render(kvs: readonly WireKv[]): string[] {
  return kvs.map((kv) => [kv.key.toString('base64'), kv.create_revision ?? '0', kv.mod_revision ?? '0', kv.version ?? '0', (kv.value ?? Buffer.alloc(0)).toString('base64'), kv.lease ?? '0'].join(' '));
}

async function everything(clients: RawClients, serializable: boolean): Promise<{ kvs: WireKv[]; revision: number }> {
  const got = await call<{ kvs?: WireKv[]; header?: { revision?: string } }>(clients.kv, 'Range', { key: Buffer.from([0]), range_end: Buffer.from([0]), serializable }, { deadlineMs: 10_000 });
  assert.equal(got.error, null, got.error?.details);
  return { kvs: got.response?.kvs ?? [], revision: Number(got.response?.header?.revision) };
}

/** Reads a snapshot file to its end; throws what a restore would refuse. */
async function readWhole(file: string): Promise<{ header: SnapshotHeader; keys: number }> {
  const reader = await openSnapshot(file);
  let keys = 0;
  for await (const record of reader.records()) if (record.key.length > 0) keys += 1;
  return { header: reader.header, keys };
}

describe('snapshots', () => {
  let etcd: EtcdServer;
  let direct: RawClients;
  let work: string;
  let truth: { kvs: WireKv[]; revision: number };

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    work = mkdtempSync(join(tmpdir(), 'ecp-snapshot-'));
    // Binary keys, several versions, a lease, empty and large values, more keys than one list page.
    const lease = await call<{ ID: string }>(direct.lease, 'LeaseGrant', { TTL: '3600' });
    for (let i = 0; i < 1_500; i += 1) await call(direct.kv, 'Put', { key: b(`bulk/${String(i).padStart(5, '0')}`), value: b(`value ${i}`) });
    await call(direct.kv, 'Put', { key: Buffer.from([0x00, 0xff, 0x10]), value: Buffer.from([0, 1, 2, 255]) });
    await call(direct.kv, 'Put', { key: b('leased'), value: b('x'), lease: lease.response?.ID });
    await call(direct.kv, 'Put', { key: b('empty'), value: Buffer.alloc(0) });
    await call(direct.kv, 'Put', { key: b('large'), value: Buffer.alloc(512 * 1024, 7) });
    for (let v = 0; v < 3; v += 1) await call(direct.kv, 'Put', { key: b('versions'), value: b(`v${v}`) });
    await call(direct.kv, 'DeleteRange', { key: b('bulk/00007') });
    const routes = {
      '/apisix/routes': 'init_dir',
      '/apisix/routes/1': JSON.stringify({ uri: '/hello', upstream_id: 'u1' }),
      '/apisix/routes/2': JSON.stringify({ id: '2', uri: '/two', service_id: 's1' }),
      '/apisix/upstreams/u1': JSON.stringify({ nodes: { '127.0.0.1:1980': 1 }, type: 'roundrobin' }),
      '/apisix/services/s1': JSON.stringify({ upstream_id: 'u1' }),
      '/apisix/consumers/jack': JSON.stringify({ plugins: { 'key-auth': { key: 'k' } } }),
      '/apisix/plugin_metadata/http-logger': JSON.stringify({ log_format: { host: '$host' } }),
      '/apisix/plugins': JSON.stringify([{ name: 'key-auth' }]),
      '/apisix/data_plane/server_info/x': JSON.stringify({ id: 'x' }),
    };
    for (const [key, value] of Object.entries(routes)) await call(direct.kv, 'Put', { key: b(key), value: b(value) });
    truth = await everything(direct, false);
  });
  after(async () => {
    direct?.close();
    await etcd?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it('round-trips a live cluster: saved, restored, and served with etcd down, field for field', async () => {
    const file = join(work, 'cluster.jsonl');
    const saved = await runCliToExit(['snapshot', 'save', file, '--endpoints', etcd.clientUrl]);
    assert.equal(saved.code, 0, saved.stderr);
    assert.match(saved.stdout, new RegExp(`saved ${truth.kvs.length} keys at revision ${truth.revision}`));
    const dataDir = join(work, 'restored-cluster');
    const restored = await runCliToExit(['snapshot', 'restore', file, '--data-dir', dataDir]);
    assert.equal(restored.code, 0, restored.stderr);

    // Nothing listens on this port: the proxy never reaches an upstream.
    const proxy = await startTestProxy([`http://127.0.0.1:${await freePort()}`], ['--upstream-timeout', '300ms'], { dataDir });
    const clients = rawClients(proxy.address);
    try {
      const served = await everything(clients, true);
      assert.equal(served.revision, truth.revision);
      assert.deepEqual(render(served.kvs), render(truth.kvs));
    } finally {
      clients.close();
      await proxy.stop();
    }
    // A second restore into the same dir is refused without --force.
    const again = await runCliToExit(['snapshot', 'restore', file, '--data-dir', dataDir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already holds a mirror at revision/);
  });

  it("saves a running proxy's mirror from its data dir, equal to the cluster's keyspace", async () => {
    const dataDir = join(work, 'running');
    const proxy = await startProxyProcess([etcd.clientUrl], [], { dataDir });
    try {
      const clients = rawClients(proxy.address);
      try {
        await until(`the proxy to serve revision ${truth.revision}`, async () => (await everything(clients, true).catch(() => ({ kvs: [], revision: 0 }))).revision >= truth.revision, 20_000);
      } finally {
        clients.close();
      }
      const file = join(work, 'from-data-dir.jsonl');
      const saved = await runCliToExit(['snapshot', 'save', file, '--data-dir', dataDir]);
      assert.equal(saved.code, 0, saved.stderr);
      const other = join(work, 'restored-from-data-dir');
      assert.equal((await runCliToExit(['snapshot', 'restore', file, '--data-dir', other])).code, 0);
      const restoredProxy = await startTestProxy([`http://127.0.0.1:${await freePort()}`], ['--upstream-timeout', '300ms'], { dataDir: other });
      const restoredClients = rawClients(restoredProxy.address);
      try {
        assert.deepEqual(render((await everything(restoredClients, true)).kvs), render(truth.kvs));
      } finally {
        restoredClients.close();
        await restoredProxy.stop();
      }
    } finally {
      await proxy.stop();
    }
  });

  it('refuses truncated, damaged and foreign files whole, leaving the data dir as it was', async () => {
    const good = join(work, 'good.jsonl');
    assert.equal((await runCliToExit(['snapshot', 'save', good, '--endpoints', etcd.clientUrl])).code, 0);
    const dataDir = join(work, 'guarded');
    assert.equal((await runCliToExit(['snapshot', 'restore', good, '--data-dir', dataDir])).code, 0);
    const bytes = readFileSync(good);

    const truncated = join(work, 'truncated.jsonl');
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const cut = join(work, 'cut-at-line.jsonl');
    writeFileSync(cut, bytes.subarray(0, bytes.lastIndexOf('\n{"end"') + 1)); // every key, no closing line
    const damaged = join(work, 'damaged.jsonl');
    const flipped = Buffer.from(bytes);
    const at = flipped.indexOf('dmFsdWUg'); // base64 of "value ", inside some key line
    flipped[at] = 'e'.charCodeAt(0);
    writeFileSync(damaged, flipped);
    const foreign = join(work, 'foreign.json');
    writeFileSync(foreign, JSON.stringify({ hello: 'world' }));

    for (const [file, reason] of [
      [truncated, /not JSON|truncated/],
      [cut, /truncated: \d+ keys and no closing line/],
      [damaged, /checksum mismatch/],
      [foreign, /not an etcd-cache-proxy snapshot/],
    ] as const) {
      const result = await runCliToExit(['snapshot', 'restore', file, '--data-dir', dataDir, '--force']);
      assert.equal(result.code, 1, `${file}: ${result.stderr}`);
      assert.match(result.stderr, /refused: /);
      assert.match(result.stderr, reason);
      assert.equal((await runCliToExit(['snapshot', 'apisix', file])).code, 1, 'the export refuses it too');
    }
    // Still the good snapshot's mirror.
    const proxy = await startTestProxy([`http://127.0.0.1:${await freePort()}`], ['--upstream-timeout', '300ms'], { dataDir });
    const clients = rawClients(proxy.address);
    try {
      assert.deepEqual(render((await everything(clients, true)).kvs), render(truth.kvs));
    } finally {
      clients.close();
      await proxy.stop();
    }
  });

  it('exports APISIX configuration as a standalone apisix.yaml, #END last', async () => {
    const file = join(work, 'for-apisix.jsonl');
    assert.equal((await runCliToExit(['snapshot', 'save', file, '--endpoints', etcd.clientUrl])).code, 0);
    const result = await runCliToExit(['snapshot', 'apisix', file]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines.at(-1), '#END');
    const config = parseYaml(result.stdout) as Record<string, Record<string, unknown>[]>;
    assert.deepEqual(config.routes, [
      { uri: '/hello', upstream_id: 'u1', id: '1' },
      { id: '2', uri: '/two', service_id: 's1' },
    ]);
    assert.deepEqual(config.upstreams, [{ nodes: { '127.0.0.1:1980': 1 }, type: 'roundrobin', id: 'u1' }]);
    assert.deepEqual(config.services, [{ upstream_id: 'u1', id: 's1' }]);
    assert.deepEqual(config.consumers, [{ plugins: { 'key-auth': { key: 'k' } }, username: 'jack' }]);
    assert.deepEqual(config.plugin_metadata, [{ log_format: { host: '$host' }, id: 'http-logger' }]);
    assert.deepEqual(config.plugins, [{ name: 'key-auth' }]);
    assert.deepEqual(Object.keys(config).sort(), ['consumers', 'plugin_metadata', 'plugins', 'routes', 'services', 'upstreams']);
    assert.match(result.stderr, /left out 2 keys/); // the init_dir marker and data_plane/server_info
  });

  it('writes periodic snapshots atomically: SIGKILLed mid-write, the previous file stays whole', async () => {
    const dataDir = join(work, 'periodic-data');
    const dir = join(work, 'periodic');
    // Enough data that writing a snapshot takes a while.
    for (let i = 0; i < 4_000; i += 1) await call(direct.kv, 'Put', { key: b(`heavy/${i}`), value: Buffer.alloc(2048, i % 251) });
    let killedMidWrite = 0;
    let lastRevision = 0;
    for (let round = 0; round < 4; round += 1) {
      const proxy = await startProxyProcess([etcd.clientUrl], ['--snapshot-dir', dir, '--snapshot-interval', '100ms'], { dataDir });
      try {
        // The mirror moves, so the proxy writes a new snapshot; kill it while its temporary file exists.
        await call(direct.kv, 'Put', { key: b('heavy/round'), value: b(String(round)) });
        // Not seeing one in time is no failure by itself: the count below says whether any kill landed.
        await until('a temporary snapshot file', () => existsSync(dir) && readdirSync(dir).some((e) => e.startsWith(`.${SNAPSHOT_FILE}.`)), 15_000, 2).catch(() => undefined);
        proxy.child.kill('SIGKILL');
        await proxy.exited;
        if (readdirSync(dir).some((e) => e.startsWith(`.${SNAPSHOT_FILE}.`))) killedMidWrite += 1;
      } finally {
        await proxy.stop();
      }
      if (existsSync(join(dir, SNAPSHOT_FILE))) {
        const { header } = await readWhole(join(dir, SNAPSHOT_FILE));
        assert.ok(Number(header.revision) >= lastRevision, 'a snapshot never goes back');
        lastRevision = Number(header.revision);
      }
      if (existsSync(join(dir, APISIX_FILE))) assert.equal(readFileSync(join(dir, APISIX_FILE), 'utf8').trimEnd().split('\n').at(-1), '#END');
    }
    assert.ok(killedMidWrite >= 1, 'no kill landed during a snapshot write; the test proved nothing');
    // A clean run afterwards clears the leftovers and writes a current snapshot.
    const proxy = await startProxyProcess([etcd.clientUrl], ['--snapshot-dir', dir, '--snapshot-interval', '100ms'], { dataDir });
    try {
      let current = 0;
      const probe = await call<{ header?: { revision?: string } }>(direct.kv, 'Range', { key: b('heavy/round') });
      const latest = Number(probe.response?.header?.revision);
      await until(
        () => `a snapshot at revision ${latest} (last seen ${current})`,
        async () => {
          if (existsSync(join(dir, SNAPSHOT_FILE))) current = Number((await readWhole(join(dir, SNAPSHOT_FILE)).catch(() => ({ header: { revision: '0' } }))).header.revision);
          return current >= latest;
        },
        15_000,
        100,
      );
      assert.equal(current, latest);
      assert.deepEqual(readdirSync(dir).filter((e) => e.endsWith('.tmp')), [], 'leftover temporary files removed');
    } finally {
      await proxy.stop();
    }
  });
});
