import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
// The flags these commands share with the proxy take the proxy's defaults, from its settings table.
import { defaultText } from '../settings/table';
import type { ObjectStoreOptions } from '../settings/types';
import { parseSnapshotUrl } from '../settings/values';
import type { KeyValueFields } from '../etcd/records';
import { toApisixYaml } from '../snapshot/apisix';
import { SnapshotError, openSnapshot } from '../snapshot/format';
import { restoreSnapshot } from '../snapshot/restore';
import { saveFromDataDir } from '../snapshot/save';
import { ObjectStoreError, openSnapshotBucket, type SnapshotBucket } from './bucket';
import { SnapshotRefused, fetchPublishedSnapshot } from './fetch';
import { describeLocation } from './location';
import { publishSnapshot } from './publish';
import { newPublisherId } from './publisher';
import { loadSnapshotSigner, loadTrustedKeys, publisherTrust } from './snapshot-keys';
import type { SnapshotSigner, TrustedKeys } from './manifest-signature';

export const OBJECT_STORE_USAGE = `  etcd-cache-proxy snapshot push [FILE | --data-dir DIR] --snapshot-url s3://BUCKET/PREFIX [--snapshot-keep ${defaultText('snapshot-keep')}] [--apisix-prefix ${defaultText('apisix-prefix')}]
                                 [--snapshot-sign-key FILE]
                                                             publish a snapshot file (or a data dir's mirror) as the proxies publish theirs
  etcd-cache-proxy snapshot pull --snapshot-url s3://BUCKET/PREFIX --data-dir DIR [--force]
                                 [--snapshot-verify-key FILE[,FILE]] [--snapshot-max-bytes ${defaultText('snapshot-max-bytes')}]
                                                             the published latest into a data dir, checked as a proxy checks it
    with either: [--s3-endpoint URL] [--s3-region ${defaultText('s3-region')}] [--s3-force-path-style] [--s3-request-checksum when-supported|when-required];
    credentials from the AWS SDK's chain (AWS_* environment, shared files, instance or pod roles)
`;

type Output = { out: (text: string) => void; err: (text: string) => void };

const OPTIONS = {
  'data-dir': { type: 'string' },
  force: { type: 'boolean' },
  'apisix-prefix': { type: 'string', default: defaultText('apisix-prefix') },
  'snapshot-url': { type: 'string' },
  'snapshot-keep': { type: 'string', default: defaultText('snapshot-keep') },
  'snapshot-sign-key': { type: 'string' },
  'snapshot-verify-key': { type: 'string', multiple: true },
  'snapshot-max-bytes': { type: 'string', default: defaultText('snapshot-max-bytes') },
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string', default: defaultText('s3-region') },
  's3-force-path-style': { type: 'boolean' },
  's3-request-checksum': { type: 'string', default: defaultText('s3-request-checksum') },
} as const;

/** What the flags of push or pull ask for, checked. */
interface ObjectStoreCall {
  readonly action: 'push' | 'pull';
  readonly values: ParsedValues;
  readonly positionals: readonly string[];
  readonly keep: number;
  readonly maxBytes: number;
  readonly signer: SnapshotSigner | null;
  readonly trusted: TrustedKeys | null;
  readonly bucket: SnapshotBucket;
}

type ParsedValues = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

/** `etcd-cache-proxy snapshot push|pull ...`; returns the exit code. */
export async function objectStoreCommand(action: 'push' | 'pull', args: readonly string[], io: Output): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.out(`Usage:\n${OBJECT_STORE_USAGE}`);
    return 0;
  }
  const usage = (problem: string): number => {
    io.err(`etcd-cache-proxy snapshot ${action}: ${problem}\n${OBJECT_STORE_USAGE}`);
    return 2;
  };
  const call = parseCall(action, args);
  if (typeof call === 'string') return usage(call);
  const dir = await mkdtemp(join(tmpdir(), 'etcd-cache-proxy-'));
  try {
    return action === 'push' ? await push(call, dir, io, usage) : await pull(call, dir, io, usage);
  } catch (error) {
    const refused = error instanceof SnapshotRefused || error instanceof SnapshotError;
    const message = error instanceof ObjectStoreError ? `${error.failure}: ${error.message}` : error instanceof Error ? error.message : String(error);
    io.err(`etcd-cache-proxy snapshot ${action}: ${refused ? 'refused: ' : ''}${message}\n`);
    return 1;
  } finally {
    call.bucket.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The flags checked, the keys read and the bucket opened; or the first problem, for the usage text. */
function parseCall(action: 'push' | 'pull', args: readonly string[]): ObjectStoreCall | string {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    return error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
  }
  const { values, positionals } = parsed;
  if (values['snapshot-url'] === undefined) return '--snapshot-url is required';
  const checksum = values['s3-request-checksum'];
  if (checksum !== 'when-supported' && checksum !== 'when-required') return '--s3-request-checksum is when-supported or when-required';
  const keep = Number(values['snapshot-keep']);
  if (!Number.isSafeInteger(keep) || keep < 1) return '--snapshot-keep is a whole number, at least 1';
  const maxBytes = Number(values['snapshot-max-bytes']);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1024) return '--snapshot-max-bytes is a whole number of bytes, at least 1024';
  if (action === 'push' && values['snapshot-verify-key'] !== undefined) return '--snapshot-verify-key is for pull';
  if (action === 'pull' && values['snapshot-sign-key'] !== undefined) return '--snapshot-sign-key is for push';
  try {
    const signer = values['snapshot-sign-key'] === undefined ? null : loadSnapshotSigner(values['snapshot-sign-key']);
    const trusted = loadTrustedKeys((values['snapshot-verify-key'] ?? []).flatMap((list) => list.split(',')).filter((file) => file !== ''));
    const options: ObjectStoreOptions = { endpoint: values['s3-endpoint'] ?? null, region: values['s3-region'], forcePathStyle: values['s3-force-path-style'] === true, requestChecksum: checksum };
    const bucket = openSnapshotBucket(parseSnapshotUrl(values['snapshot-url']), options);
    return { action, values, positionals, keep, maxBytes, signer, trusted, bucket };
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** A snapshot file, or a data dir's mirror saved to one, published as the proxies publish theirs. */
async function push({ values, positionals, keep, signer, bucket }: ObjectStoreCall, dir: string, io: Output, usage: (problem: string) => number): Promise<number> {
  const dataDir = values['data-dir'];
  if ((positionals.length === 1) === (dataDir !== undefined) || positionals.length > 1) return usage('give exactly one of FILE and --data-dir');
  let file = positionals[0] ?? '';
  if (dataDir !== undefined) {
    file = join(dir, 'snapshot.jsonl');
    await saveFromDataDir(dataDir, file);
  }
  // The whole file is read, and so checked, before anything is uploaded.
  const reader = await openSnapshot(file);
  const records: KeyValueFields[] = [];
  for await (const record of reader.records()) records.push(record);
  const result = await publishSnapshot(bucket, {
    file,
    header: reader.header,
    apisixYaml: toApisixYaml(records, values['apisix-prefix']).yaml,
    publisher: newPublisherId(),
    keep,
    signer,
    trust: publisherTrust(signer, null),
    // An operator's push asks no etcd: a manifest past this snapshot's revision is taken as newer.
    clusterRevision: () => Promise.resolve(null),
  });
  io.out(
    result.kind === 'published'
      ? `published revision ${reader.header.revision} (${records.length} keys${signer === null ? ', unsigned' : `, signed by key ${signer.keyId}`}) to ${describeLocation(bucket.location)}; latest is revision ${result.latest.revision}\n`
      : `not published: latest in ${describeLocation(bucket.location)} is already revision ${result.latest.revision}\n`,
  );
  return 0;
}

/** The published latest into a data dir, checked as a proxy checks it. */
async function pull({ values, positionals, maxBytes, trusted, bucket }: ObjectStoreCall, dir: string, io: Output, usage: (problem: string) => number): Promise<number> {
  const dataDir = values['data-dir'];
  if (dataDir === undefined || positionals.length > 0) return usage('--data-dir is required, and no FILE');
  const fetched = await fetchPublishedSnapshot(bucket, join(dir, 'snapshot.jsonl'), { clusterId: null, scope: null, newerThan: 0, trustedKeys: trusted, maxBytes });
  if (fetched === null) {
    io.err(`etcd-cache-proxy snapshot pull: nothing is published in ${describeLocation(bucket.location)}\n`);
    return 1;
  }
  const restored = await restoreSnapshot(join(dir, 'snapshot.jsonl'), dataDir, { force: values.force === true });
  const verified = trusted === null ? 'signature not checked' : `signed by key ${fetched.manifest.signature?.key_id ?? '?'}`;
  io.out(`restored ${restored.keys} keys at revision ${restored.revision} (published ${fetched.manifest.published_at}, ${verified}) into ${dataDir}\n`);
  return 0;
}
