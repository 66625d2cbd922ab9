// Integration (real etcd, real crashes): the mirror recovers exactly after
// kill -9 of the proxy, after a compaction it slept through, and when the
// data dir meets another cluster.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { open } from 'lmdb';
import { EncodedKeyValue, encodeKeyValue } from '../../src/etcd/kv-bytes';
import { openStore } from '../../src/store/store';
import { freePort, sleep, startEtcd, type EtcdServer } from '../support/etcd';
import { startProxyProcess, startTestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const ALL = { key: Buffer.from([0]), range_end: Buffer.from([0]) };

interface RangeReply {
  header?: { revision?: string };
  kvs?: { key: Buffer; value?: Buffer; mod_revision?: string }[];
}

async function keyspace(clients: RawClients, serializable: boolean): Promise<{ revision: number; content: string[] }> {
  const reply = await call<RangeReply>(clients.kv, 'Range', { ...ALL, serializable });
  assert.equal(reply.error, null, reply.error?.details);
  return {
    revision: Number(reply.response?.header?.revision),
    content: (reply.response?.kvs ?? []).map((kv) => `${kv.key.toString()}=${kv.value?.toString() ?? ''}@${kv.mod_revision ?? ''}`),
  };
}

async function scrapeMirrorRevision(address: string): Promise<number> {
  try {
    const text = await (await fetch(`http://${address}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('etcd_cache_proxy_mirror_revision '));
    return Number(line?.split(' ')[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The log must hold every revision from its first to M exactly once: a full-keyspace mirror sees an event at every revision. */
async function assertLogContiguous(dataDir: string): Promise<void> {
  const store = openStore(dataDir);
  try {
    const revisions = [...store.eventsAfter(0)].map((entry) => entry.revision);
    for (let i = 1; i < revisions.length; i += 1) {
      assert.equal(revisions[i], (revisions[i - 1] ?? 0) + 1, `log gap or duplicate after revision ${revisions[i - 1]}`);
    }
    if (revisions.length > 0) assert.equal(revisions[revisions.length - 1], store.meta().revision);
  } finally {
    await store.close();
  }
}

describe('mirror recovery', () => {
  let etcd: EtcdServer;
  let direct: RawClients;
  let dataDir: string;

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
  });
  after(async () => {
    direct?.close();
    await etcd?.stop();
  });

  it('kill -9 of the proxy during a stream of writes: each restart resumes with no gap and no duplicate', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-crash-'));
    const port = await freePort();
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        const n = written % 50;
        if (written % 7 === 6) await call(direct.kv, 'DeleteRange', { key: b(`crash/${n}`) });
        else await call(direct.kv, 'Put', { key: b(`crash/${n}`), value: b(`w${written}`) });
        written += 1;
      }
    })();
    try {
      for (let crash = 0; crash < 4; crash += 1) {
        const proxy = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn'], { dataDir, port });
        await until('the mirror to move', async () => (await scrapeMirrorRevision(proxy.address)) > 0);
        await sleep(200 + crash * 150);
        proxy.child.kill('SIGKILL');
        await proxy.exited;
        await assertLogContiguous(dataDir);
      }
    } finally {
      writing = false;
      await writer;
    }
    assert.ok(written > 50, `only ${written} writes happened`);
    const proxy = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn'], { dataDir, port });
    const clients = rawClients(proxy.address);
    try {
      const truth = await keyspace(direct, false);
      await until('the mirror to catch up', async () => (await scrapeMirrorRevision(proxy.address)) >= truth.revision);
      assert.deepEqual(await keyspace(clients, true), truth);
    } finally {
      clients.close();
      await proxy.stop();
    }
    await assertLogContiguous(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('re-lists after a compaction that happened while the proxy was down', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-compact-'));
    let proxy = await startTestProxy([etcd.clientUrl], [], { dataDir });
    await call(direct.kv, 'Put', { key: b('cmp/a'), value: b('1') });
    await call(direct.kv, 'Put', { key: b('cmp/b'), value: b('1') });
    await proxy.mirrored((await keyspace(direct, false)).revision);
    await proxy.stop();
    await call(direct.kv, 'Put', { key: b('cmp/a'), value: b('2') });
    await call(direct.kv, 'DeleteRange', { key: b('cmp/b') });
    await call(direct.kv, 'Put', { key: b('cmp/c'), value: b('3') });
    const truth = await keyspace(direct, false);
    await call(direct.kv, 'Compact', { revision: String(truth.revision), physical: true });
    proxy = await startTestProxy([etcd.clientUrl], [], { dataDir });
    const clients = rawClients(proxy.address);
    try {
      await proxy.mirrored(truth.revision);
      assert.deepEqual(await keyspace(clients, true), truth);
      const relists = (await proxy.metrics.mirrorRelists.get()).values[0]?.value ?? 0;
      assert.equal(relists, 1);
    } finally {
      clients.close();
      await proxy.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('follows a compaction made on etcd directly: older reads then get the compacted error', async () => {
    const proxy = await startTestProxy([etcd.clientUrl]);
    const clients = rawClients(proxy.address);
    try {
      for (let i = 0; i < 5; i += 1) await call(direct.kv, 'Put', { key: b('direct-compact'), value: b(`v${i}`) });
      const now = (await keyspace(direct, false)).revision;
      await proxy.mirrored(now);
      const before = await call(clients.kv, 'Range', { key: b('direct-compact'), revision: String(now - 2) });
      assert.equal(before.error, null, 'the log answers a past revision');
      await call(direct.kv, 'Compact', { revision: String(now - 1) });
      await until(
        'the proxy to follow the compaction',
        async () => (await call(clients.kv, 'Range', { key: b('direct-compact'), revision: String(now - 2) })).error !== null,
        20_000,
      );
      const fromEtcd = await call(direct.kv, 'Range', { key: b('direct-compact'), revision: String(now - 2) });
      const fromProxy = await call(clients.kv, 'Range', { key: b('direct-compact'), revision: String(now - 2) });
      assert.equal(fromProxy.error?.details, fromEtcd.error?.details);
      const still = await call(clients.kv, 'Range', { key: b('direct-compact'), revision: String(now - 1) });
      assert.equal(still.error, null, 'the compaction point itself stays readable');
    } finally {
      clients.close();
      await proxy.stop();
    }
  });

  it('finds a mirror that differs from etcd in the background check, and repairs it', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-check-'));
    let proxy = await startTestProxy([etcd.clientUrl], [], { dataDir });
    await call(direct.kv, 'Put', { key: b('check/a'), value: b('right') });
    await call(direct.kv, 'Put', { key: b('check/b'), value: b('right') });
    const truth = await keyspace(direct, false);
    await proxy.mirrored(truth.revision);
    await proxy.stop();
    // Damage the mirror behind the proxy's back: a value etcd never had.
    const env = open({ path: join(dataDir, 'mirror'), maxDbs: 8 });
    const meta = env.openDB<{ activeKv: string }, string>({ name: 'meta', encoding: 'msgpack' }).get('meta');
    const table = env.openDB<Buffer, Buffer>({ name: meta?.activeKv ?? 'kv-a', keyEncoding: 'binary', encoding: 'binary' });
    const stored = table.get(b('check/a'));
    assert.ok(stored !== undefined);
    const record = new EncodedKeyValue(stored);
    const { key, create_revision, mod_revision, version, lease } = record;
    table.putSync(b('check/a'), encodeKeyValue({ key, create_revision, mod_revision, version, lease, value: b('wrong') }).bytes);
    await env.close();

    // A budget of 4 KiB/s: the check reads a page at a time, each step waiting until its bytes fit.
    const budget = 4096;
    const started = Date.now();
    proxy = await startTestProxy([etcd.clientUrl], ['--consistency-check-interval', '200ms', '--consistency-check-bytes-per-second', String(budget)], { dataDir });
    const clients = rawClients(proxy.address);
    try {
      await until('the check to repair the mirror', async () => {
        const seen = await call<RangeReply>(clients.kv, 'Range', { key: b('check/a'), serializable: true });
        return seen.response?.kvs?.[0]?.value?.toString() === 'right';
      });
      assert.deepEqual(await keyspace(clients, true), await keyspace(direct, false));
      const checks = await proxy.metrics.consistencyChecks.get();
      assert.ok((checks.values.find((v) => v.labels.result === 'mismatch')?.value ?? 0) >= 1);
      await until('a clean check after the repair', async () => ((await proxy.metrics.consistencyChecks.get()).values.find((v) => v.labels.result === 'match')?.value ?? 0) >= 1, 60_000);
      // Within the budget: what it read is at most what the elapsed time allows, plus the page in hand.
      const read = (await proxy.metrics.consistencyCheckBytes.get()).values[0]?.value ?? 0;
      const allowed = (budget * (Date.now() - started)) / 1000 + budget;
      assert.ok(read > 0 && read <= allowed, `${read} bytes read, ${allowed.toFixed(0)} allowed`);
    } finally {
      clients.close();
      await proxy.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('discards the mirror of another cluster found in its data dir, and rebuilds', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-other-'));
    const first = await startEtcd();
    const second = await startEtcd();
    const firstClients = rawClients(first.clientAddress);
    const secondClients = rawClients(second.clientAddress);
    try {
      await call(firstClients.kv, 'Put', { key: b('only-in-first'), value: b('1') });
      for (let i = 0; i < 5; i += 1) await call(firstClients.kv, 'Put', { key: b(`first/${i}`), value: b('x') });
      let proxy = await startTestProxy([first.clientUrl], [], { dataDir });
      await proxy.mirrored((await keyspace(firstClients, false)).revision);
      await proxy.stop();
      await call(secondClients.kv, 'Put', { key: b('only-in-second'), value: b('2') });
      const truth = await keyspace(secondClients, false);
      proxy = await startTestProxy([second.clientUrl], [], { dataDir });
      const clients = rawClients(proxy.address);
      try {
        await until('the mirror to hold the second cluster', async () => {
          const seen = await keyspace(clients, true);
          return seen.content.length === 1 && seen.content[0]?.startsWith('only-in-second=') === true;
        });
        assert.deepEqual(await keyspace(clients, true), truth);
      } finally {
        clients.close();
        await proxy.stop();
      }
    } finally {
      firstClients.close();
      secondClients.close();
      await Promise.all([first.stop(), second.stop()]);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
