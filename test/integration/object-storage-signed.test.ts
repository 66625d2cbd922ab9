// Integration (real etcd, a real S3-compatible server: s3rver on loopback):
// signed snapshots. A publisher with --snapshot-sign-key publishes; a proxy
// with --snapshot-verify-key, an empty data dir and etcd down serves it.
// Then the bucket gets what anyone with write access could put there: a
// tampered snapshot and manifest with a correct SHA-256, unsigned, signed by
// another key, or carrying the genuine signature. A proxy without keys takes
// it (so it is otherwise a valid snapshot); with the key, an empty data dir
// serves nothing from it and a data dir that holds the signed one keeps
// serving that; each refusal is counted. An object over --snapshot-max-bytes
// is refused before any of it reaches the disk.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SnapshotBucket } from '../../src/objectstore/bucket';
import { LATEST, MAX_MANIFEST_BYTES, baseName, manifestName, snapshotName, type Manifest } from '../../src/objectstore/manifest';
import { signManifest } from '../../src/objectstore/manifest-signature';
import { readLatest } from '../../src/objectstore/publish';
import { loadSnapshotSigner } from '../../src/objectstore/snapshot-keys';
import { SNAPSHOT_FORMAT, SNAPSHOT_VERSION, headerLine, keyLine, trailerLine } from '../../src/snapshot/format';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { runCliToExit, startProxyProcess, startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { openTestBucket, startS3Server, useS3Credentials, type S3Server } from '../support/s3';
import { until, untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const FAST = ['--upstream-timeout', '1s'];
const R1 = '{"id":"1","uri":"/one"}';
const R2 = '{"id":"2","uri":"/two"}';
const EVIL = '{"id":"1","uri":"/one","upstream":{"nodes":{"attacker.example:80":1}}}';
/** A value big enough that the snapshot is well over the small bound used below. */
const BIG = JSON.stringify({ id: 'big', blob: 'x'.repeat(8192) });
const SMALL_BOUND = '4096';

interface RangeReply {
  header: { revision: string };
  kvs?: { key: Buffer; value: Buffer }[];
}

async function values(clients: RawClients, prefix = '/apisix/routes/'): Promise<Record<string, string> | string> {
  const reply = await call<RangeReply>(clients.kv, 'Range', { key: b(prefix), range_end: b(`${prefix.slice(0, -1)}0`), serializable: true }, { deadlineMs: 2_000 });
  if (reply.error !== null) return reply.error.details;
  return Object.fromEntries((reply.response?.kvs ?? []).map((kv) => [kv.key.toString(), kv.value.toString()]));
}

const fetches = async (proxy: TestProxy, result: string): Promise<number> =>
  (await proxy.metrics.snapshotFetches.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
const fetchedBytes = async (proxy: TestProxy): Promise<number> => (await proxy.metrics.snapshotFetchBytes.get()).values[0]?.value ?? 0;

interface KeyPair {
  readonly signFile: string;
  readonly verifyFile: string;
  readonly keyId: string;
}

async function keygen(dir: string): Promise<KeyPair> {
  const made = await runCliToExit(['snapshot', 'keygen', '--out', dir]);
  assert.equal(made.code, 0, made.stderr);
  const keyId = /^key id ([0-9a-f]{16})$/m.exec(made.stdout)?.[1];
  assert.ok(keyId !== undefined, made.stdout);
  return { signFile: join(dir, 'snapshot-sign.key'), verifyFile: join(dir, 'snapshot-verify.pub'), keyId };
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** A whole, valid snapshot file (own checksum line included) with `routes` under /apisix/routes/, as `like` describes its cluster and keys. */
function forgedSnapshot(like: Manifest, revision: number, routes: Record<string, string>): Buffer {
  const lines = [
    headerLine({
      format: SNAPSHOT_FORMAT,
      version: SNAPSHOT_VERSION,
      revision: String(revision),
      compact_revision: '0',
      cluster_id: like.cluster_id,
      member_id: '1',
      raft_term: '2',
      scope: like.scope,
      created_at: new Date().toISOString(),
      source: 'forged',
    }),
    ...Object.entries(routes).map(([key, value]) => keyLine({ key: b(key), value: b(value), create_revision: 2, mod_revision: revision, version: 1, lease: '0' })),
  ];
  const hash = createHash('sha256');
  for (const line of lines) hash.update(line);
  return Buffer.from(lines.join('') + trailerLine(lines.length - 1, hash));
}

describe('signed snapshots in object storage', () => {
  let s3: S3Server;
  let etcd: EtcdServer;
  let direct: RawClients;
  let bucket: SnapshotBucket;
  let keysDir: string;
  let trusted: KeyPair;
  let other: KeyPair;
  /** The data dir of the proxy that adopted the signed snapshot. */
  let adoptedDir: string;
  let good: Manifest;
  let restoreEnvironment = (): void => undefined;
  const flags = (): string[] => s3.flags('signed');

  before(async () => {
    restoreEnvironment = useS3Credentials();
    s3 = await startS3Server();
    bucket = openTestBucket(s3, 'signed');
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    keysDir = mkdtempSync(join(tmpdir(), 'ecp-keys-'));
    trusted = await keygen(join(keysDir, 'trusted'));
    other = await keygen(join(keysDir, 'other'));
    adoptedDir = mkdtempSync(join(tmpdir(), 'ecp-adopted-'));
  });
  after(async () => {
    direct?.close();
    bucket?.close();
    await etcd?.stop();
    await s3?.close();
    rmSync(keysDir, { recursive: true, force: true });
    rmSync(adoptedDir, { recursive: true, force: true });
    restoreEnvironment();
  });

  it('a publisher signs what it publishes; a proxy with the verify key, an empty data dir and etcd down serves it', async () => {
    let last = 0;
    for (const [k, v] of [['/apisix/routes/1', R1], ['/apisix/routes/2', R2], ['/apisix/plugin_metadata/big', BIG]] as const) {
      last = Number((await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b(k), value: b(v) })).response?.header.revision);
    }
    const publisher = await startTestProxy([etcd.clientUrl], [...flags(), '--snapshot-publish', '--snapshot-interval', '200ms', '--snapshot-sign-key', trusted.signFile]);
    try {
      good = await untilValue(`latest to name revision ${last}`, async () => {
        const manifest = await readLatest(bucket);
        return manifest !== null && Number(manifest.revision) >= last ? manifest : undefined;
      });
    } finally {
      await publisher.stop();
    }
    assert.equal(good.signature?.key_id, trusted.keyId, 'latest carries the signing key id keygen printed');
    const base = good.snapshot.name.replace(/\.snapshot\.jsonl$/, '');
    const manifest = JSON.parse((await bucket.get(manifestName(base), MAX_MANIFEST_BYTES))?.toString() ?? '{}') as Manifest;
    assert.deepEqual(manifest.signature, good.signature, 'the manifest is signed, and latest is its copy');
    assert.ok(good.snapshot.bytes > Number(SMALL_BOUND), `the snapshot (${good.snapshot.bytes} bytes) is over the small bound used below`);
    etcd.signal('SIGKILL');

    const follower = await startTestProxy([etcd.clientUrl], [...flags(), ...FAST, '--snapshot-verify-key', trusted.verifyFile], { dataDir: adoptedDir });
    const clients = rawClients(follower.address);
    try {
      await until('the follower to serve the signed snapshot', async () => typeof (await values(clients)) === 'object');
      assert.deepEqual(await values(clients), { '/apisix/routes/1': R1, '/apisix/routes/2': R2 });
      assert.equal(await fetches(follower, 'adopted'), 1);
      assert.equal(await fetches(follower, 'bad-signature'), 0);
    } finally {
      clients.close();
      await follower.stop();
    }
  });

  describe('a tampered snapshot with a valid SHA-256', () => {
    after(async () => {
      await bucket.put(LATEST, b(JSON.stringify(good)));
      await etcd.restart();
    });

    /** Puts a forged snapshot, its manifest and `latest` naming it, newer than the signed one; `sign` says what signature it carries. */
    const plant = async (sign: 'none' | 'other key' | 'copied signature'): Promise<number> => {
      const revision = Number(good.revision) + 10;
      const file = forgedSnapshot(good, revision, { '/apisix/routes/1': EVIL });
      const base = baseName(revision, good.cluster_id, 'attacker');
      const { signature, ...fields } = good;
      let manifest: Manifest = { ...fields, revision: String(revision), snapshot: { name: snapshotName(base), sha256: sha256(file), bytes: file.length }, apisix: null, publisher: 'attacker' };
      if (sign === 'other key') manifest = signManifest(manifest, loadSnapshotSigner(other.signFile));
      if (sign === 'copied signature') manifest = { ...manifest, signature };
      await bucket.put(manifest.snapshot.name, file);
      await bucket.put(manifestName(base), b(JSON.stringify(manifest)));
      await bucket.put(LATEST, b(JSON.stringify(manifest)));
      return revision;
    };

    it('is taken by a proxy without a verify key (so it is otherwise valid), which warned at start that this could happen', async () => {
      await plant('none');
      const unchecked = await startProxyProcess([etcd.clientUrl], [...flags(), ...FAST]);
      const clients = rawClients(unchecked.address);
      try {
        await until('the proxy without a key to serve the forged snapshot', async () => {
          const got = await values(clients);
          return typeof got === 'object' && got['/apisix/routes/1'] === EVIL;
        });
        const warnings = unchecked.stderr().split('\n').filter((line) => line.includes('no --snapshot-verify-key: anyone who may write the bucket'));
        assert.equal(warnings.length, 1, unchecked.stderr());
      } finally {
        clients.close();
        await unchecked.stop();
      }
    });

    for (const sign of ['none', 'other key', 'copied signature'] as const) {
      it(`with signature: ${sign}, is refused by a proxy with the verify key: an empty data dir serves nothing, the one with the signed snapshot keeps it`, async () => {
        const forged = await plant(sign);
        const empty = await startTestProxy([etcd.clientUrl], [...flags(), ...FAST, '--snapshot-verify-key', trusted.verifyFile]);
        const emptyClients = rawClients(empty.address);
        try {
          await until('the forged snapshot to be refused', async () => (await fetches(empty, 'bad-signature')) >= 1);
          assert.match(String(await values(emptyClients)), /never synced/, 'reads are refused, as with no snapshot');
          assert.equal(await fetches(empty, 'adopted'), 0);
          assert.equal(await fetchedBytes(empty), 0, 'not even downloaded');
        } finally {
          emptyClients.close();
          await empty.stop();
        }
        const holder = await startTestProxy([etcd.clientUrl], [...flags(), ...FAST, '--snapshot-verify-key', trusted.verifyFile], { dataDir: adoptedDir });
        const holderClients = rawClients(holder.address);
        try {
          await until('the forged snapshot to be refused', async () => (await fetches(holder, 'bad-signature')) >= 1);
          assert.deepEqual(await values(holderClients), { '/apisix/routes/1': R1, '/apisix/routes/2': R2 });
          const read = await call<RangeReply>(holderClients.kv, 'Range', { key: b('/apisix/routes/1') });
          assert.equal(read.response?.header.revision, good.revision, `still at the signed revision, not ${forged}`);
          assert.equal(await fetches(holder, 'adopted'), 0);
        } finally {
          holderClients.close();
          await holder.stop();
        }
      });
    }

    it('is refused by snapshot pull with the verify key, and taken without', async () => {
      await plant('other key');
      const target = mkdtempSync(join(tmpdir(), 'ecp-pull-signed-'));
      try {
        const refused = await runCliToExit(['snapshot', 'pull', '--data-dir', target, ...s3.flags('signed'), '--snapshot-verify-key', trusted.verifyFile]);
        assert.equal(refused.code, 1, refused.stdout);
        assert.match(refused.stderr, new RegExp(`refused: latest .*signed by key ${other.keyId}, which is not one of the verify keys \\(${trusted.keyId}\\)`));
        const taken = await runCliToExit(['snapshot', 'pull', '--data-dir', target, ...s3.flags('signed')]);
        assert.equal(taken.code, 0, taken.stderr);
        assert.match(taken.stdout, /signature not checked/);
      } finally {
        rmSync(target, { recursive: true, force: true });
      }
    });
  });

  it('a planted latest, newer and unsigned, neither stops a signing publisher nor is pointed at by it', async () => {
    const revision = Number(good.revision) + 1000;
    const file = forgedSnapshot(good, revision, { '/apisix/routes/1': EVIL });
    const base = baseName(revision, good.cluster_id, 'planted');
    const { signature: _unsigned, ...fields } = good;
    const planted: Manifest = { ...fields, revision: String(revision), snapshot: { name: snapshotName(base), sha256: sha256(file), bytes: file.length }, apisix: null, publisher: 'planted' };
    await bucket.put(planted.snapshot.name, file);
    await bucket.put(manifestName(base), b(JSON.stringify(planted)));
    await bucket.put(LATEST, b(JSON.stringify(planted)));
    const put = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b('/apisix/routes/3'), value: b(R1) });
    const publisher = await startTestProxy([etcd.clientUrl], [...flags(), '--snapshot-publish', '--snapshot-interval', '200ms', '--snapshot-sign-key', trusted.signFile]);
    try {
      const latest = await untilValue('latest to be the signing publisher\'s', async () => {
        // The publisher deletes the planted manifest meanwhile (past etcd's revision: no history etcd has), and
        // the test store may reset a connection under that: read again.
        const manifest = await readLatest(bucket).catch(() => undefined);
        return manifest?.signature?.key_id === trusted.keyId ? manifest : undefined;
      });
      assert.ok(Number(latest.revision) >= Number(put.response?.header.revision), `latest is revision ${latest.revision}`);
      assert.ok(Number(latest.revision) < revision, 'not the planted revision');
    } finally {
      await publisher.stop();
    }
  });

  it('snapshot push signs with --snapshot-sign-key, and snapshot pull checks with --snapshot-verify-key', async () => {
    const target = mkdtempSync(join(tmpdir(), 'ecp-pull-signed-'));
    try {
      const pushed = await runCliToExit(['snapshot', 'push', '--data-dir', adoptedDir, ...s3.flags('pushed'), '--snapshot-sign-key', trusted.signFile]);
      assert.equal(pushed.code, 0, pushed.stderr);
      assert.match(pushed.stdout, new RegExp(`signed by key ${trusted.keyId}\\)`));
      const pulled = await runCliToExit(['snapshot', 'pull', '--data-dir', target, ...s3.flags('pushed'), '--snapshot-verify-key', trusted.verifyFile]);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.match(pulled.stdout, new RegExp(`at revision ${good.revision} .*signed by key ${trusted.keyId}\\)`));
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });

  describe('size bound', () => {
    before(async () => {
      await bucket.put(LATEST, b(JSON.stringify(good)));
      etcd.signal('SIGKILL');
    });
    after(async () => {
      await bucket.put(LATEST, b(JSON.stringify(good)));
      await etcd.restart();
    });

    it('refuses a signed snapshot over --snapshot-max-bytes before downloading any of it', async () => {
      const proxy = await startTestProxy([etcd.clientUrl], [...flags(), ...FAST, '--snapshot-verify-key', trusted.verifyFile, '--snapshot-max-bytes', SMALL_BOUND]);
      const clients = rawClients(proxy.address);
      try {
        await until('the snapshot to be refused as too large', async () => (await fetches(proxy, 'too-large')) >= 1);
        assert.equal(await fetchedBytes(proxy), 0, 'no byte of it reached the disk');
        assert.match(String(await values(clients)), /never synced/);
      } finally {
        clients.close();
        await proxy.stop();
      }
    });

    it('refuses, from the size the store gives before the body, an object bigger than its (unsigned) manifest says', async () => {
      const big = Buffer.alloc(2 * 1024 * 1024, 'x');
      const revision = Number(good.revision) + 20;
      const base = baseName(revision, good.cluster_id, 'liar');
      const { signature: _unsigned, ...fields } = good;
      const lying: Manifest = { ...fields, revision: String(revision), snapshot: { name: snapshotName(base), sha256: sha256(big), bytes: 100 }, apisix: null };
      await bucket.put(lying.snapshot.name, big);
      await bucket.put(LATEST, b(JSON.stringify(lying)));
      const proxy = await startTestProxy([etcd.clientUrl], [...flags(), ...FAST, '--snapshot-max-bytes', String(1024 * 1024)]);
      try {
        await until('the object to be refused as too large', async () => (await fetches(proxy, 'too-large')) >= 1);
        assert.equal(await fetchedBytes(proxy), 0, 'refused before its body was read: nothing reached the disk');
      } finally {
        await proxy.stop();
      }
    });
  });
});
