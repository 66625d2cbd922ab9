import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSnapshotBucket } from '../../src/objectstore/bucket';
import { readLatest } from '../../src/objectstore/publish';
import { S3_CREDENTIALS, startS3Server, type S3Server } from '../support/s3';

/** How often the publisher publishes: short, so that `latest` exists within seconds of the start and stays a few seconds behind etcd. */
const PUBLISH_INTERVAL = '2s';
const PREFIX = 'robustness';

/** The fleet's bucket for `bucket-fallback`: one S3-compatible server for the run, one key pair, one publishing proxy. */
export interface FleetBucket {
  /** The proxy that publishes (the others only fall back). */
  readonly publisher: string;
  /** The flags of a proxy: every one falls back to the bucket and verifies; the publisher also publishes, signed. */
  args(publishes: boolean): string[];
  /** The revision `latest` names now (0: none yet, or the store did not answer). */
  latestRevision(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Starts s3rver in this process (test/support/s3.ts), writes an Ed25519 key
 * pair as `snapshot keygen` does, and puts s3rver's credentials in the
 * environment (the proxies get them from there, as from the AWS SDK's chain)
 * until close().
 */
export async function startFleetBucket(publisher: string): Promise<FleetBucket> {
  const saved = Object.fromEntries(Object.keys(S3_CREDENTIALS).map((name) => [name, process.env[name]]));
  Object.assign(process.env, S3_CREDENTIALS);
  const keys = mkdtempSync(join(tmpdir(), 'ecp-robust-keys-'));
  let server: S3Server | null = null;
  try {
    server = await startS3Server();
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signKey = join(keys, 'snapshot-sign.key');
    const verifyKey = join(keys, 'snapshot-verify.pub');
    writeFileSync(signKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(verifyKey, publicKey.export({ type: 'spki', format: 'pem' }));
    const s3 = server;
    const reader = openSnapshotBucket({ bucket: s3.bucket, prefix: PREFIX }, { endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, requestChecksum: 'when-required' });
    return {
      publisher,
      args: (publishes) => [
        ...s3.flags(PREFIX),
        '--snapshot-verify-key',
        verifyKey,
        ...(publishes ? ['--snapshot-publish', '--snapshot-interval', PUBLISH_INTERVAL, '--snapshot-sign-key', signKey] : []),
      ],
      async latestRevision() {
        try {
          return Number((await readLatest(reader))?.revision ?? 0);
        } catch {
          return 0;
        }
      },
      async close() {
        reader.close();
        await s3.close();
        rmSync(keys, { recursive: true, force: true });
        restore(saved);
      },
    };
  } catch (error) {
    await server?.close();
    rmSync(keys, { recursive: true, force: true });
    restore(saved);
    throw error;
  }
}

function restore(saved: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
}
