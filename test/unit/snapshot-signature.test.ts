// Unit (no network; key files in a temporary dir): signed manifests of
// published snapshots. What a signature covers and what breaks it, the key
// files and their configuration checks, the size bound on what is read from
// the bucket, and what fetchPublishedSnapshot refuses (against an in-memory
// bucket), each with the reason it is counted under.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { configProblems } from '../support/config-problems';
import { createLogger } from '../../src/log';
import { createMetrics } from '../../src/metrics';
import type { Mirror } from '../../src/mirror/mirror';
import { startSnapshotFallback } from '../../src/objectstore/fallback';
import type { MirrorStore } from '../../src/store/store';
import type { Liveness } from '../../src/upstream/liveness';
import { diffConfig } from '../../src/config-diff';
import { keyIdOf } from '../../src/files/ed25519-key-file';
import { ObjectTooLarge, readBounded, writeBounded } from '../../src/objectstore/bounded-body';
import type { SnapshotBucket } from '../../src/objectstore/bucket';
import { SnapshotRefused, fetchPublishedSnapshot, type Expectation } from '../../src/objectstore/fetch';
import { keygenCommand } from '../../src/objectstore/keygen-command';
import { LATEST, MANIFEST_FORMAT, MANIFEST_VERSION, parseManifest, type Manifest } from '../../src/objectstore/manifest';
import { checkSignature, signManifest, type TrustedKeys } from '../../src/objectstore/manifest-signature';
import { loadSnapshotSigner, loadTrustedKeys } from '../../src/objectstore/snapshot-keys';
import { until } from '../support/until';
import { SNAPSHOT_FORMAT, SNAPSHOT_VERSION, headerLine, keyLine, trailerLine, type SnapshotHeader } from '../../src/snapshot/format';

const dir = mkdtempSync(join(tmpdir(), 'ecp-snapsign-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A key pair written as `snapshot keygen` writes it. */
async function keyPair(name: string): Promise<{ signFile: string; verifyFile: string; keyId: string }> {
  let printed = '';
  const code = await keygenCommand(['--out', join(dir, name)], { out: (text) => (printed += text), err: (text) => assert.fail(text) });
  assert.equal(code, 0);
  const keyId = /^key id ([0-9a-f]{16})$/m.exec(printed)?.[1];
  assert.ok(keyId !== undefined, printed);
  return { signFile: join(dir, name, 'snapshot-sign.key'), verifyFile: join(dir, name, 'snapshot-verify.pub'), keyId };
}

const sha256 = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex');

/** A whole, valid snapshot file of `keys` at `revision`. */
function snapshotFile(revision: number, keys: Record<string, string>, scope = 'all'): Buffer {
  const header: SnapshotHeader = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    revision: String(revision),
    compact_revision: '0',
    cluster_id: '42',
    member_id: '7',
    raft_term: '2',
    scope,
    created_at: '2026-01-01T00:00:00.000Z',
    source: 'test',
  };
  const hash = createHash('sha256');
  const lines = [headerLine(header)];
  for (const [key, value] of Object.entries(keys)) {
    lines.push(keyLine({ key: Buffer.from(key), value: Buffer.from(value), create_revision: 2, mod_revision: revision, version: 1, lease: '0' }));
  }
  for (const line of lines) hash.update(line);
  return Buffer.from(lines.join('') + trailerLine(Object.keys(keys).length, hash));
}

const base = (revision: number): string => `snapshots/${String(revision).padStart(20, '0')}-42-abc`;

function manifestOf(revision: number, file: Buffer): Manifest {
  const yaml = Buffer.from('routes: []\n');
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    revision: String(revision),
    cluster_id: '42',
    scope: 'all',
    snapshot: { name: `${base(revision)}.snapshot.jsonl`, sha256: sha256(file), bytes: file.length },
    apisix: { name: `${base(revision)}.apisix.yaml`, sha256: sha256(yaml), bytes: yaml.length },
    published_at: '2026-01-01T00:00:01.000Z',
    publisher: 'abc',
  };
}

/** An in-memory bucket that reads with the same bounds as the real one; `sizes` may lie about an object's size, as a store could. */
function memoryBucket(objects: Map<string, Buffer>, sizes = new Map<string, number>()): SnapshotBucket & { downloads: string[] } {
  const downloads: string[] = [];
  async function* chunks(bytes: Buffer): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < bytes.length; at += 1024) yield bytes.subarray(at, at + 1024);
  }
  const open = (name: string, maxBytes: number): AsyncGenerator<Uint8Array> | null => {
    const bytes = objects.get(name);
    if (bytes === undefined) return null;
    const said = sizes.get(name) ?? bytes.length;
    if (said > maxBytes) throw new ObjectTooLarge(name, maxBytes, said);
    return chunks(bytes);
  };
  return {
    location: { bucket: 'memory', prefix: '' },
    downloads,
    async put(name, body) {
      objects.set(name, body);
    },
    async putFile(name, file) {
      objects.set(name, readFileSync(file));
    },
    async get(name, maxBytes) {
      const body = open(name, maxBytes);
      return body === null ? null : readBounded(body, name, maxBytes);
    },
    async download(name, file, maxBytes) {
      const body = open(name, maxBytes);
      if (body === null) return null;
      downloads.push(name);
      return writeBounded(body, file, name, maxBytes);
    },
    async list() {
      return [...objects.entries()].map(([name, bytes]) => ({ name, bytes: bytes.length }));
    },
    async delete(names) {
      for (const name of names) objects.delete(name);
    },
    close: () => undefined,
  };
}

/** The refusal fetchPublishedSnapshot ends with, or 'served'. */
async function fetchOutcome(bucket: SnapshotBucket, expect: Partial<Expectation> = {}): Promise<{ kind: string; message: string; revision: number }> {
  const target = mkdtempSync(join(dir, 'fetch-'));
  try {
    const fetched = await fetchPublishedSnapshot(bucket, join(target, 'snapshot.jsonl'), { clusterId: null, scope: null, newerThan: 0, trustedKeys: null, maxBytes: 1 << 20, ...expect });
    if (fetched === null) return { kind: 'none', message: '', revision: 0 };
    for await (const _record of fetched.reader.records());
    return { kind: 'served', message: '', revision: Number(fetched.manifest.revision) };
  } catch (error) {
    if (error instanceof SnapshotRefused) return { kind: error.kind, message: error.message, revision: error.revision };
    throw error;
  } finally {
    rmSync(target, { recursive: true, force: true });
  }
}

describe('signed manifests', async () => {
  const first = await keyPair('first');
  const second = await keyPair('second');
  const signer = loadSnapshotSigner(first.signFile);
  const trusted = loadTrustedKeys([first.verifyFile]) as TrustedKeys;
  const file = snapshotFile(5, { '/apisix/routes/1': '{"uri":"/one"}' });
  const signed = signManifest(manifestOf(5, file), signer);

  it('signs with the key keygen printed the id of, and verifies after a round trip through JSON in any key order', () => {
    assert.equal(signer.keyId, first.keyId);
    assert.equal(signed.signature?.key_id, first.keyId);
    assert.deepEqual(checkSignature(signed, trusted), { ok: true, keyId: first.keyId });
    const reordered = Object.fromEntries(Object.entries(JSON.parse(JSON.stringify(signed)) as Record<string, unknown>).reverse());
    assert.deepEqual(checkSignature(parseManifest(Buffer.from(JSON.stringify(reordered))), trusted), { ok: true, keyId: first.keyId });
  });

  it('does not verify once any signed field is changed', () => {
    const changes: [string, (m: Manifest) => Manifest][] = [
      ['revision', (m) => ({ ...m, revision: '6' })],
      ['cluster_id', (m) => ({ ...m, cluster_id: '43' })],
      ['scope', (m) => ({ ...m, scope: '/apisix/' })],
      ['snapshot name', (m) => ({ ...m, snapshot: { ...m.snapshot, name: `${base(6)}.snapshot.jsonl` } })],
      ['snapshot bytes', (m) => ({ ...m, snapshot: { ...m.snapshot, bytes: m.snapshot.bytes + 1 } })],
      ['apisix.yaml digest', (m) => ({ ...m, apisix: m.apisix === null ? null : { ...m.apisix, sha256: sha256('other') } })],
      ['apisix.yaml dropped', (m) => ({ ...m, apisix: null })],
      ['published_at', (m) => ({ ...m, published_at: '2027-01-01T00:00:00.000Z' })],
      ['publisher', (m) => ({ ...m, publisher: 'xyz' })],
    ];
    for (const [field, change] of changes) {
      const check = checkSignature(change(signed), trusted);
      assert.equal(check.ok, false, field);
      assert.match(check.ok ? '' : check.reason, /does not verify/, field);
    }
  });

  it('does not verify a tampered file whose manifest carries its own, correct SHA-256', () => {
    const tampered = snapshotFile(5, { '/apisix/routes/1': '{"uri":"/evil"}' });
    assert.notEqual(sha256(tampered), signed.snapshot.sha256);
    const manifest = { ...signed, snapshot: { ...signed.snapshot, sha256: sha256(tampered), bytes: tampered.length } };
    const check = checkSignature(manifest, trusted);
    assert.equal(check.ok, false);
  });

  it('refuses a manifest with no signature, a malformed one, one by an unknown key, and one by another key under a trusted id', () => {
    const { signature: _dropped, ...unsigned } = signed;
    assert.deepEqual(checkSignature(unsigned, trusted), { ok: false, reason: 'not signed' });
    assert.deepEqual(checkSignature({ ...signed, signature: { key_id: first.keyId, ed25519: 'AAAA' } }, trusted), { ok: false, reason: 'its signature is malformed' });
    const byOther = signManifest(manifestOf(5, file), loadSnapshotSigner(second.signFile));
    const unknown = checkSignature(byOther, trusted);
    assert.equal(unknown.ok, false);
    assert.match(unknown.ok ? '' : unknown.reason, new RegExp(`signed by key ${second.keyId}, which is not one of the verify keys \\(${first.keyId}\\)`));
    // Another key's signature presented under the trusted key's id: the id only picks the key, the signature decides.
    const disguised = { ...byOther, signature: { key_id: first.keyId, ed25519: byOther.signature?.ed25519 ?? '' } };
    assert.match(JSON.stringify(checkSignature(disguised, trusted)), /does not verify/);
  });

  it('with two verify keys, takes what the second one signed', () => {
    const both = loadTrustedKeys([first.verifyFile, second.verifyFile]) as TrustedKeys;
    assert.deepEqual([...both.keys()], [first.keyId, second.keyId]);
    const bySecond = signManifest(manifestOf(5, file), loadSnapshotSigner(second.signFile));
    assert.deepEqual(checkSignature(bySecond, both), { ok: true, keyId: second.keyId });
  });

  it('keygen writes the private key 0600, never over an existing key', async () => {
    assert.equal(statSync(first.signFile).mode & 0o777, 0o600);
    assert.equal(keyIdOf(loadSnapshotSigner(first.signFile).publicKey), first.keyId);
    let error = '';
    const code = await keygenCommand(['--out', join(dir, 'first')], { out: () => undefined, err: (text) => (error += text) });
    assert.equal(code, 1);
    assert.match(error, /EEXIST/);
  });

  describe('fetchPublishedSnapshot with verify keys', () => {
    const publish = (manifest: Manifest, body: Buffer): Map<string, Buffer> =>
      new Map([
        [LATEST, Buffer.from(JSON.stringify(manifest))],
        [manifest.snapshot.name, body],
      ]);

    it('serves a snapshot signed by a trusted key', async () => {
      assert.deepEqual(await fetchOutcome(memoryBucket(publish(signed, file)), { trustedKeys: trusted }), { kind: 'served', message: '', revision: 5 });
    });

    it('refuses, as bad-signature and before any download, an unsigned or foreign-signed manifest over a tampered file with a valid SHA-256; remembers no revision from it', async () => {
      const tampered = snapshotFile(9, { '/apisix/routes/1': '{"uri":"/evil"}' });
      const { signature: _dropped, ...unsigned } = manifestOf(9, tampered);
      for (const manifest of [unsigned, signManifest(manifestOf(9, tampered), loadSnapshotSigner(second.signFile))]) {
        const bucket = memoryBucket(publish(manifest, tampered));
        const outcome = await fetchOutcome(bucket, { trustedKeys: trusted });
        assert.equal(outcome.kind, 'bad-signature', outcome.message);
        assert.equal(outcome.revision, 0, 'a forged revision must not hold back a genuine snapshot');
        assert.deepEqual(bucket.downloads, []);
        // Without verify keys it is taken, as before signing existed.
        assert.equal((await fetchOutcome(bucket)).kind, 'served');
      }
    });

    it('refuses, as bad-signature, a signed manifest whose file was replaced', async () => {
      const tampered = snapshotFile(5, { '/apisix/routes/1': '{"uri":"/two"}' });
      const outcome = await fetchOutcome(memoryBucket(publish(signed, tampered)), { trustedKeys: trusted });
      assert.equal(outcome.kind, 'bad-signature');
      assert.match(outcome.message, /not the file that was signed/);
    });
  });

  it('a fallback logs a refusal once (and the missing verify key at start, once), and counts each', async () => {
    const tampered = snapshotFile(9, { '/apisix/routes/1': '{"uri":"/evil"}' });
    const { signature: _dropped, ...unsigned } = manifestOf(9, tampered);
    const bucket = memoryBucket(new Map([[LATEST, Buffer.from(JSON.stringify(unsigned))], [unsigned.snapshot.name, tampered]]));
    const lines: { level: string; msg: string }[] = [];
    const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as { level: string; msg: string }) });
    const metrics = createMetrics(new Registry());
    const refusals = async (): Promise<number> => (await metrics.snapshotFetches.get()).values.find((v) => v.labels.result === 'bad-signature')?.value ?? 0;
    // Etcd lost from the start; each 'lost' is one more look at latest, as the fallback's timer would make every 60 s.
    const liveness = Object.assign(new EventEmitter(), { isLost: () => true }) as unknown as Liveness;
    const store = { meta: () => ({ identity: null, revision: 0 }) } as unknown as MirrorStore;
    const mirror = { adopt: () => assert.fail('a refused snapshot is never adopted') } as unknown as Mirror;
    const scratchDir = mkdtempSync(join(dir, 'scratch-'));
    for (const trustedKeys of [trusted, null]) {
      lines.length = 0;
      // Without keys, an empty bucket: only the warning at start is looked at.
      const fallback = startSnapshotFallback({ bucket: trustedKeys === null ? memoryBucket(new Map()) : bucket, store, scratchDir, mirror, liveness, scope: () => 'all', trustedKeys, maxBytes: 1 << 20, metrics, log });
      try {
        if (trustedKeys === null) {
          assert.equal(lines.filter((line) => line.msg.startsWith('no --snapshot-verify-key')).length, 1);
          continue;
        }
        assert.equal(lines.filter((line) => line.msg.startsWith('no --snapshot-verify-key')).length, 0);
        for (let attempt = 1; attempt <= 3; attempt += 1) {
          if (attempt > 1) (liveness as unknown as EventEmitter).emit('lost');
          await until(`refusal ${attempt}`, async () => (await refusals()) === attempt);
        }
        const logged = lines.filter((line) => line.level === 'error');
        assert.equal(logged.length, 1, JSON.stringify(lines));
        assert.match(logged[0]?.msg ?? '', /not used \(bad-signature\)/);
      } finally {
        fallback.close();
      }
    }
  });

  describe('size bounds', () => {
    it('refuses a snapshot bigger than the bound before downloading it', async () => {
      const bucket = memoryBucket(new Map([[LATEST, Buffer.from(JSON.stringify(signed))], [signed.snapshot.name, file]]));
      const outcome = await fetchOutcome(bucket, { trustedKeys: trusted, maxBytes: file.length - 1 });
      assert.equal(outcome.kind, 'too-large');
      assert.deepEqual(bucket.downloads, []);
    });

    it('refuses, before reading its body, an object the store says is bigger than its manifest claims and than the bound', async () => {
      const big = Buffer.alloc(64 * 1024, 'x');
      const lying = { ...manifestOf(5, file), snapshot: { ...manifestOf(5, file).snapshot, bytes: 100 } };
      let downloaded = -1;
      const bucket = memoryBucket(new Map([[LATEST, Buffer.from(JSON.stringify(lying))], [lying.snapshot.name, big]]));
      const outcome = await fetchOutcome(bucket, { maxBytes: 4096, onDownloaded: (bytes) => (downloaded = bytes) });
      assert.equal(outcome.kind, 'too-large');
      assert.equal(downloaded, -1, 'nothing reached the disk');
    });

    it('stops, at the bound, an object whose store says less than it sends', async () => {
      const big = Buffer.alloc(64 * 1024, 'x');
      const lying = { ...manifestOf(5, file), snapshot: { ...manifestOf(5, file).snapshot, bytes: 100 } };
      let downloaded = -1;
      const bucket = memoryBucket(new Map([[LATEST, Buffer.from(JSON.stringify(lying))], [lying.snapshot.name, big]]), new Map([[lying.snapshot.name, 100]]));
      const outcome = await fetchOutcome(bucket, { maxBytes: 4096, onDownloaded: (bytes) => (downloaded = bytes) });
      assert.equal(outcome.kind, 'too-large');
      assert.ok(downloaded >= 0 && downloaded <= 4096, `${downloaded} bytes reached the disk`);
    });

    it('stops a body that runs past the bound, with no more than the bound on disk, and keeps latest small', async () => {
      async function* endless(): AsyncGenerator<Uint8Array> {
        for (;;) yield Buffer.alloc(1000, 'y');
      }
      const target = join(dir, 'bounded');
      await assert.rejects(writeBounded(endless(), target, 'x', 10_500), ObjectTooLarge);
      assert.ok(statSync(target).size <= 10_500, `${statSync(target).size} bytes written`);
      assert.equal(statSync(target).mode & 0o777, 0o600);
      await assert.rejects(readBounded(endless(), 'latest', 64 * 1024), ObjectTooLarge);
      const planted = memoryBucket(new Map([[LATEST, Buffer.alloc(65 * 1024, ' ')]]));
      assert.equal((await fetchOutcome(planted)).kind, 'too-large');
    });
  });

  describe('configuration', () => {
    const problems = configProblems;
    const s3 = ['--snapshot-url', 's3://bucket/prefix'];

    it('takes key files, lists verify keys from commas, repeats and the environment, and defaults the bound to 256 MiB', () => {
      const config = loadConfig({ argv: [...s3, '--snapshot-publish', '--snapshot-sign-key', first.signFile, '--snapshot-verify-key', first.verifyFile, '--snapshot-verify-key', second.verifyFile], env: {} });
      assert.equal(config.snapshotSignKey, first.signFile);
      assert.deepEqual(config.snapshotVerifyKeys, [first.verifyFile, second.verifyFile]);
      assert.equal(config.snapshotMaxBytes, 256 * 1024 * 1024);
      const fromEnv = loadConfig({ argv: s3, env: { ETCD_CACHE_PROXY_SNAPSHOT_VERIFY_KEY: `${first.verifyFile},${second.verifyFile}`, ETCD_CACHE_PROXY_SNAPSHOT_MAX_BYTES: '1048576' } });
      assert.deepEqual(fromEnv.snapshotVerifyKeys, [first.verifyFile, second.verifyFile]);
      assert.equal(fromEnv.snapshotMaxBytes, 1048576);
    });

    it('lists every unusable key file at once, with what is wrong with it', () => {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
      writeFileSync(join(dir, 'rsa.pub'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
      writeFileSync(join(dir, 'rsa.key'), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      writeFileSync(join(dir, 'junk.pub'), 'not a key');
      const found = problems([
        ...s3,
        '--snapshot-publish',
        '--snapshot-sign-key', join(dir, 'rsa.key'),
        '--snapshot-verify-key', `${join(dir, 'missing.pub')},${join(dir, 'rsa.pub')},${join(dir, 'junk.pub')},${first.signFile}`,
        '--snapshot-max-bytes', '100',
      ]);
      assert.equal(found.length, 3, found.join('\n'));
      assert.match(found[0] ?? '', /--snapshot-sign-key=.*rsa\.key: a rsa key, not Ed25519/);
      assert.match(found[1] ?? '', /missing\.pub: not a readable file; .*rsa\.pub: a rsa key, not Ed25519 .*; .*junk\.pub: not a PEM public key .*; .*snapshot-sign\.key: holds a private key/);
      assert.match(found[2] ?? '', /--snapshot-max-bytes=100: must be a whole number of bytes, at least 1024/);
    });

    it('refuses keys that would do nothing', () => {
      assert.deepEqual(problems(['--snapshot-verify-key', first.verifyFile]), ['--snapshot-verify-key has no effect without --snapshot-url']);
      assert.deepEqual(problems([...s3, '--snapshot-sign-key', first.signFile]), ['--snapshot-sign-key has no effect without --snapshot-publish']);
    });

    it('needs a restart for a change of keys or bound', () => {
      const before = loadConfig({ argv: [...s3, '--snapshot-verify-key', first.verifyFile], env: {} });
      const next = loadConfig({ argv: [...s3, '--snapshot-verify-key', `${first.verifyFile},${second.verifyFile}`, '--snapshot-max-bytes', '2048'], env: {} });
      assert.deepEqual(diffConfig(before, next), { live: [], needRestart: ['snapshotVerifyKeys', 'snapshotMaxBytes'] });
    });
  });
});
