// Integration (real etcd, a real S3-compatible server: s3rver on loopback):
// a proxy publishes its snapshot to object storage; another one, with an
// empty data dir and no etcd, serves it; when etcd is back it follows etcd
// from the snapshot's revision. Damaged, truncated and foreign snapshots,
// a store that is down and wrong credentials are refused or retried, and
// never served or written over what the data dir holds.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SnapshotBucket } from '../../src/objectstore/bucket';
import { fetchPublishedSnapshot } from '../../src/objectstore/fetch';
import { LATEST } from '../../src/objectstore/manifest';
import { readLatest } from '../../src/objectstore/publish';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { runCliToExit, startProxyProcess, startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { S3_CREDENTIALS, openTestBucket, startS3Server, useS3Credentials, type S3Server } from '../support/s3';
import { until, untilValue } from '../support/until';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const FAST = ['--upstream-timeout', '1s'];
const PUBLISH = ['--snapshot-publish', '--snapshot-interval', '200ms'];
// APISIX-like values, so apisix.yaml holds them.
const R1 = '{"id":"1","uri":"/one"}';
const R2 = '{"id":"2","uri":"/two"}';
const U1 = '{"id":"1","type":"roundrobin"}';

interface RangeReply {
  header: { revision: string };
  kvs?: { key: Buffer; value: Buffer }[];
}

async function values(clients: RawClients, prefix = '/apisix/'): Promise<Record<string, string> | string> {
  const reply = await call<RangeReply>(clients.kv, 'Range', { key: b(prefix), range_end: b(`${prefix.slice(0, -1)}0`), serializable: true }, { deadlineMs: 2_000 });
  if (reply.error !== null) return reply.error.details;
  return Object.fromEntries((reply.response?.kvs ?? []).map((kv) => [kv.key.toString(), kv.value.toString()]));
}

const fetches = async (proxy: TestProxy, result: string): Promise<number> =>
  (await proxy.metrics.snapshotFetches.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

describe('snapshots in object storage', () => {
  let s3: S3Server;
  let etcd: EtcdServer;
  let direct: RawClients;
  let bucket: SnapshotBucket;
  let restoreEnvironment = (): void => undefined;

  before(async () => {
    restoreEnvironment = useS3Credentials();
    s3 = await startS3Server();
    bucket = openTestBucket(s3, 'proxy');
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
  });
  after(async () => {
    direct?.close();
    bucket?.close();
    await etcd?.stop();
    await s3?.close();
    restoreEnvironment();
  });

  let published = 0;

  it('publishes the mirror; a proxy with an empty data dir and no etcd serves it, then follows etcd from its revision', async () => {
    for (const [k, v] of [['/apisix/routes/1', R1], ['/apisix/routes/2', R2], ['/apisix/upstreams/1', U1]] as const) {
      assert.equal((await call(direct.kv, 'Put', { key: b(k), value: b(v) })).error, null);
    }
    const publisher = await startTestProxy([etcd.clientUrl], [...s3.flags(), ...PUBLISH]);
    try {
      await publisher.mirrored(4);
      const latest = await untilValue('latest to name revision 4', async () => {
        const manifest = await readLatest(bucket);
        return manifest !== null && Number(manifest.revision) >= 4 ? manifest : undefined;
      });
      published = Number(latest.revision);
      assert.ok(latest.apisix !== null, 'apisix.yaml is published with it');
      assert.match((await bucket.get(latest.apisix.name, 1 << 20))?.toString() ?? '', /routes:[\s\S]*\/one[\s\S]*upstreams:/);
      assert.equal(await fetches(publisher, 'adopted'), 0, 'a proxy that reaches etcd never fetches');
    } finally {
      await publisher.stop();
    }
    // Changed after the snapshot, while nobody publishes: it must arrive once etcd is back.
    assert.equal((await call(direct.kv, 'Put', { key: b('/apisix/routes/2'), value: b('r2-meanwhile') })).error, null);
    etcd.signal('SIGKILL');

    const follower = await startTestProxy([etcd.clientUrl], [...s3.flags(), ...FAST]);
    const clients = rawClients(follower.address);
    const watch = new WatchClient(follower.address);
    try {
      await until('the follower to serve the published snapshot', async () => typeof (await values(clients)) === 'object');
      assert.deepEqual(await values(clients), { '/apisix/routes/1': R1, '/apisix/routes/2': R2, '/apisix/upstreams/1': U1 });
      const stale = await call<RangeReply>(clients.kv, 'Range', { key: b('/apisix/routes/1') });
      assert.equal(stale.headers?.get('x-etcd-cache-proxy-stale')[0], 'true', 'marked stale');
      assert.equal(stale.response?.header.revision, String(published));
      assert.equal(await fetches(follower, 'adopted'), 1);
      // A watch from the snapshot's next revision, as a gateway makes after its read.
      await watch.createAll([{ key: b('/apisix/'), range_end: b('/apisix0'), start_revision: published + 1 }]);

      await etcd.restart();
      const event = await watch.next('the change made while the follower served the snapshot', (r) => (r.events ?? []).some((e) => e.kv?.value?.toString() === 'r2-meanwhile'));
      assert.equal(event.events?.length, 1);
      await until('the follower to be fresh again', async () => (await call(clients.kv, 'Range', { key: b('/apisix/routes/1') })).headers?.get('x-etcd-cache-proxy-stale')[0] === undefined);
      const deliveries = watch.responses.flatMap((r) => r.events ?? []).filter((e) => e.kv?.value?.toString() === 'r2-meanwhile');
      assert.equal(deliveries.length, 1, 'delivered once');
      assert.equal((await follower.metrics.mirrorRelists.get()).values[0]?.value ?? 0, 0, 'resumed at the snapshot revision + 1, no list');
    } finally {
      watch.close();
      clients.close();
      await follower.stop();
      // The later cases need etcd: a failure above must not leave them waiting for it.
      if (!etcd.running()) await etcd.restart();
    }
  });

  it('two publishers: one that lands late, with an older mirror, never takes latest back from the newer one', async (t) => {
    const put = async (value: string): Promise<number> => {
      const answer = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b('/apisix/routes/many'), value: b(value) });
      assert.equal(answer.error, null);
      return Number(answer.response?.header.revision);
    };
    // s3rver, on a loaded machine, now and then resets a kept-alive connection: the read is made again, as a client would.
    const latestRevision = async (): Promise<number> => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return Number((await readLatest(bucket))?.revision ?? 0);
        } catch (error) {
          if (attempt >= 3 || !String(error instanceof Error ? error.message : error).includes('ECONNRESET')) throw error;
        }
      }
    };
    const uploads = async (p: TestProxy, result?: string): Promise<number> =>
      (await p.metrics.snapshotUploads.get()).values.filter((v) => result === undefined || v.labels.result === result).reduce((sum, v) => sum + v.value, 0);
    const gaugeOf = async (gauge: TestProxy['metrics']['mirrorRevision']): Promise<number> => (await gauge.get()).values[0]?.value ?? 0;
    const lateDir = mkdtempSync(join(tmpdir(), 'ecp-late-publisher-'));
    t.after(() => rmSync(lateDir, { recursive: true, force: true }));

    // The late publisher first publishes two revisions of its own, and stops: its data dir keeps the second.
    const early = await startTestProxy([etcd.clientUrl], [...s3.flags(), ...PUBLISH], { dataDir: lateDir });
    let oldest: Buffer;
    let held: number;
    try {
      const first = await put('late-1');
      await until('the late publisher to publish its first revision', async () => (await latestRevision()) === first);
      oldest = (await bucket.get(LATEST, 1 << 16)) ?? assert.fail('latest is gone');
      held = await put('late-2');
      await until('the late publisher to publish its second revision', async () => (await latestRevision()) === held);
    } finally {
      await early.stop();
    }

    // The other publisher, following etcd, takes latest past what the late one holds.
    const current = await startTestProxy([etcd.clientUrl], [...s3.flags(), ...PUBLISH]);
    let last = 0;
    try {
      for (let i = 0; i < 20; i += 1) {
        last = await put(String(i));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await until('latest to reach the last write', async () => (await latestRevision()) === last);
      assert.ok((await uploads(current, 'published')) >= 1);
      const manifests = (await bucket.list('snapshots/')).filter((o) => o.name.endsWith('.json'));
      assert.ok(manifests.length <= 10, `${manifests.length} manifests kept (--snapshot-keep 10)`);
    } finally {
      await current.stop();
    }

    // The late one comes back on its data dir with its etcd out of reach (and no fallback fetch for a minute):
    // what it would publish is its mirror, older than latest. Its one attempt ends in the counts.
    const late = async (check: (p: TestProxy) => Promise<void>): Promise<void> => {
      const p = await startTestProxy(['http://127.0.0.1:1'], [...s3.flags(), ...PUBLISH, '--upstream-timeout', '60s'], { dataDir: lateDir });
      try {
        await until('the late publisher to try to publish', async () => (await uploads(p)) >= 1);
        assert.equal(await gaugeOf(p.metrics.mirrorRevision), held, 'it published from its older mirror');
        await check(p);
        assert.equal(await fetches(p, 'adopted'), 0, 'nothing fetched: its mirror stayed the older one');
      } finally {
        await p.stop();
      }
    };
    await late(async (p) => {
      assert.deepEqual({ published: await uploads(p, 'published'), skipped: await uploads(p, 'skipped') }, { published: 0, skipped: 1 }, 'not uploaded: latest is newer');
      assert.equal(await latestRevision(), last, 'latest never went back');
      // Only the other publisher published `last`: the late one learned it from latest.
      assert.equal(await gaugeOf(p.metrics.snapshotPublishedRevision), last);
    });

    // As a publisher that crossed the newer one leaves it: latest names an older manifest than the newest in the
    // bucket, and older than the late one's mirror. The late one uploads, and points latest at the newest manifest.
    await bucket.put(LATEST, oldest);
    await late(async (p) => {
      assert.equal(await uploads(p, 'published'), 1, 'uploaded: latest was older than its mirror');
      assert.equal(await latestRevision(), last, 'latest names the newest manifest, not the one just uploaded');
      assert.equal(await gaugeOf(p.metrics.snapshotPublishedRevision), last);
    });
  });

  it('snapshot push publishes a data dir as the proxies do; snapshot pull restores latest into an empty data dir', async () => {
    const source = mkdtempSync(join(tmpdir(), 'ecp-push-'));
    const target = mkdtempSync(join(tmpdir(), 'ecp-pull-'));
    try {
      const proxy = await startTestProxy([etcd.clientUrl], [], { dataDir: source });
      const put = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b('/apisix/routes/pushed'), value: b(R1) });
      await proxy.mirrored(Number(put.response?.header.revision));
      await proxy.stop();
      const s3Flags = s3.flags('cli');
      const pushed = await runCliToExit(['snapshot', 'push', '--data-dir', source, ...s3Flags]);
      assert.equal(pushed.code, 0, pushed.stderr);
      assert.match(pushed.stdout, new RegExp(`published revision ${put.response?.header.revision} `));
      const again = await runCliToExit(['snapshot', 'push', '--data-dir', source, ...s3Flags]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /not published: latest .* is already revision/);
      const pulled = await runCliToExit(['snapshot', 'pull', '--data-dir', target, ...s3Flags]);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.match(pulled.stdout, new RegExp(`at revision ${put.response?.header.revision} `));
      const refused = await runCliToExit(['snapshot', 'pull', '--data-dir', target, ...s3Flags]);
      assert.equal(refused.code, 1, 'a data dir that holds a mirror is not overwritten without --force');
      const served = await startTestProxy(['http://127.0.0.1:1'], FAST, { dataDir: target });
      const clients = rawClients(served.address);
      try {
        const got = await values(clients);
        assert.ok(typeof got === 'object', String(got));
        assert.equal(got['/apisix/routes/pushed'], R1);
      } finally {
        clients.close();
        await served.stop();
      }
    } finally {
      rmSync(source, { recursive: true, force: true });
      rmSync(target, { recursive: true, force: true });
    }
  });

  it('a publisher killed mid-upload leaves latest naming a whole snapshot, and its next start clears what the kill left in the data dir', async (t) => {
    // Big enough that an upload takes a while: 2000 keys of 2 KiB.
    const value = b('x'.repeat(2048));
    for (let i = 0; i < 2000; i += 1) await call(direct.kv, 'Put', { key: b(`/apisix/bulk/${i}`), value });
    let checked = 0;
    const dataDir = mkdtempSync(join(tmpdir(), 'ecp-publisher-'));
    const scratch = join(dataDir, 'objectstore-tmp');
    const startedAt = Date.now();
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    for (let round = 0; round < 3; round += 1) {
      // What a kill during an upload leaves (the kill below may land between two uploads): planted, to be sure it is there.
      mkdirSync(join(scratch, 'publish-killed'), { recursive: true });
      writeFileSync(join(scratch, 'publish-killed', 'snapshot.jsonl'), 'half a snapshot');
      const previous = readdirSync(scratch);
      const publisher = await startProxyProcess([etcd.clientUrl], [...s3.flags('killed'), '--snapshot-publish', '--snapshot-interval', '100ms', '--log-level', 'warn'], { dataDir });
      for (const name of previous) assert.equal(existsSync(join(scratch, name)), false, `${name}, left by a killed publisher, is still in ${scratch}`);
      // Keep the mirror moving so the publisher uploads again and again, then kill it at some point of that.
      const writes = (async () => {
        for (let i = 0; i < 20; i += 1) await call(direct.kv, 'Put', { key: b('/apisix/bulk/moving'), value: b(String(i)) });
      })();
      await new Promise((resolve) => setTimeout(resolve, 1_500 + round * 300));
      publisher.child.kill('SIGKILL');
      await publisher.exited;
      await writes;
      await publisher.stop();
      const killed = openTestBucket(s3, 'killed');
      const dir = mkdtempSync(join(tmpdir(), 'ecp-killed-'));
      try {
        const fetched = await fetchPublishedSnapshot(killed, join(dir, 'snapshot.jsonl'), { clusterId: null, scope: null, newerThan: 0, trustedKeys: null, maxBytes: 1 << 30 });
        if (fetched === null) continue; // killed before its first publish
        let keys = 0;
        for await (const record of fetched.reader.records()) keys += record.key.length > 0 ? 1 : 0;
        assert.ok(keys >= 2000, `latest names a whole snapshot (${keys} keys)`);
        checked += 1;
      } finally {
        killed.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
    assert.ok(checked >= 1, 'the publisher published before it was killed at least once');
    const inSystemTmp = readdirSync(tmpdir()).filter((name) => name.startsWith('etcd-cache-proxy-publish-') && statSync(join(tmpdir(), name)).mtimeMs >= startedAt);
    assert.deepEqual(inSystemTmp, [], 'nothing of the publisher in the system temporary directory');
  });

  describe('what is refused, and what is retried', () => {
    /** The proxy with an empty data dir and etcd down, for one test. */
    const stranded = async (): Promise<{ proxy: TestProxy; clients: RawClients; stop: () => Promise<void> }> => {
      const proxy = await startTestProxy([etcd.clientUrl], [...s3.flags(), ...FAST]);
      const clients = rawClients(proxy.address);
      return {
        proxy,
        clients,
        async stop() {
          clients.close();
          await proxy.stop();
        },
      };
    };
    let good: Buffer;
    let snapshotName: string;

    before(async () => {
      const latest = await readLatest(bucket);
      assert.ok(latest !== null);
      snapshotName = latest.snapshot.name;
      good = (await bucket.get(snapshotName, 1 << 30)) ?? Buffer.alloc(0);
      etcd.signal('SIGKILL');
    });
    after(async () => {
      await bucket.put(snapshotName, good);
      await etcd.restart();
    });

    for (const [what, damage] of [
      ['a damaged snapshot', (bytes: Buffer): Buffer => Buffer.from(bytes.toString().replace('"kv"', '"kV"'))],
      ['a truncated snapshot', (bytes: Buffer): Buffer => bytes.subarray(0, Math.floor(bytes.length / 2))],
    ] as const) {
      it(`refuses ${what}, serves nothing from it`, async () => {
        await bucket.put(snapshotName, damage(good));
        const { proxy, clients, stop } = await stranded();
        try {
          await until('the fetch to be refused', async () => (await fetches(proxy, 'refused')) >= 1);
          assert.match(String(await values(clients)), /never synced/, 'reads are refused, as with no snapshot');
          assert.equal(await fetches(proxy, 'adopted'), 0);
        } finally {
          await stop();
          await bucket.put(snapshotName, good);
        }
      });
    }

    it("refuses another cluster's snapshot into a data dir that knows its cluster, and keeps serving its own", async () => {
      const other = await startEtcd();
      const dataDir = mkdtempSync(join(tmpdir(), 'ecp-own-cluster-'));
      try {
        const otherClients = rawClients(other.clientAddress);
        await call(otherClients.kv, 'Put', { key: b('/apisix/routes/1'), value: b('own') });
        otherClients.close();
        const own = await startTestProxy([other.clientUrl], [...s3.flags('other-cluster-never-published')], { dataDir });
        await own.mirrored(2);
        await own.stop();
        other.signal('SIGKILL');
        // The bucket's latest is the first cluster's (published above).
        const proxy = await startTestProxy([other.clientUrl], [...s3.flags(), ...FAST], { dataDir });
        const clients = rawClients(proxy.address);
        try {
          await until('the foreign snapshot to be refused', async () => (await fetches(proxy, 'refused')) >= 1);
          assert.deepEqual(await values(clients), { '/apisix/routes/1': 'own' });
        } finally {
          clients.close();
          await proxy.stop();
        }
      } finally {
        await other.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it('retries while the store is down, and serves the snapshot once it is back', async () => {
      await s3.stop();
      const { proxy, clients, stop } = await stranded();
      try {
        await until('two failed fetches', async () => (await fetches(proxy, 'unreachable')) >= 2, 20_000);
        assert.match(String(await values(clients)), /never synced/);
        await s3.start();
        await until('the snapshot to be served once the store is back', async () => typeof (await values(clients)) === 'object', 30_000);
      } finally {
        await s3.start();
        await stop();
      }
    });

    it('counts wrong credentials as denied, and serves nothing', async () => {
      process.env.AWS_ACCESS_KEY_ID = 'WRONG';
      const { proxy, clients, stop } = await stranded();
      try {
        await until('a denied fetch', async () => (await fetches(proxy, 'denied')) >= 1);
        assert.match(String(await values(clients)), /never synced/);
      } finally {
        await stop();
        process.env.AWS_ACCESS_KEY_ID = S3_CREDENTIALS.AWS_ACCESS_KEY_ID;
      }
    });
  });
});
