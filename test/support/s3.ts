import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { openSnapshotBucket, type SnapshotBucket } from '../../src/objectstore/bucket';

// A real S3-compatible server (s3rver, in this process) on a loopback port,
// for the object-storage tests. It checks the access key ID, not the
// signature: wrong credentials are a wrong key ID here. It cannot decode the
// SDK's chunked uploads with trailing checksums, hence the proxy's
// --s3-request-checksum when-required.

/** The only credentials s3rver knows. */
export const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } as const;

/** Puts S3_CREDENTIALS in the environment (the AWS SDK's credential chain reads it there); returns what puts it back. */
export function useS3Credentials(): () => void {
  const saved = Object.entries(S3_CREDENTIALS).map(([name, value]) => {
    const before = process.env[name];
    process.env[name] = value;
    return [name, before] as const;
  });
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}

/** The proxy's bucket client for `prefix` on the test server (checksums as s3rver can read them). */
export function openTestBucket(s3: S3Server, prefix: string): SnapshotBucket {
  return openSnapshotBucket({ bucket: s3.bucket, prefix }, { endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, requestChecksum: 'when-required' });
}

export interface S3Server {
  readonly endpoint: string;
  readonly bucket: string;
  /** The proxy flags that reach this server (credentials come from the environment). */
  flags(prefix?: string): string[];
  /** Stops answering (the store is down); start() brings it back on the same port with the same objects. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its objects. */
  close(): Promise<void>;
}

export async function startS3Server(bucket = 'snapshots'): Promise<S3Server> {
  const directory = mkdtempSync(join(tmpdir(), 'ecp-s3-'));
  let server: S3rver | null = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    flags: (prefix = 'proxy') => [
      '--snapshot-url',
      `s3://${bucket}/${prefix}`,
      '--s3-endpoint',
      endpoint,
      '--s3-force-path-style',
      '--s3-request-checksum',
      'when-required',
    ],
    async stop() {
      await server?.close();
      server = null;
    },
    async start() {
      if (server !== null) return;
      server = new S3rver({ address: '127.0.0.1', port, silent: true, directory, configureBuckets: [{ name: bucket }] });
      await server.run();
    },
    async close() {
      await server?.close();
      server = null;
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
