import { SnapshotError, openSnapshot, type SnapshotReader } from '../snapshot/format';
import { ObjectTooLarge } from './bounded-body';
import type { SnapshotBucket } from './bucket';
import { LATEST, MAX_MANIFEST_BYTES, parseManifest, type Manifest } from './manifest';
import { checkSignature, type TrustedKeys } from './manifest-signature';

/**
 * Why a published snapshot is refused, as counted in snapshot_fetches_total:
 * refused (damaged, truncated, another cluster's or other keys),
 * bad-signature (with verify keys: unsigned, signed by an unknown key, not
 * verifying, or a file that is not the one signed), too-large (past
 * --snapshot-max-bytes, refused before it is downloaded).
 */
export type RefusalKind = 'refused' | 'bad-signature' | 'too-large';

/** A published snapshot that must not be used. Never retried as is. */
export class SnapshotRefused extends Error {
  constructor(
    message: string,
    /** The revision of the refused snapshot, when its manifest can be believed: that one is not worth fetching again. */
    readonly revision = 0,
    readonly kind: RefusalKind = 'refused',
  ) {
    super(message);
    this.name = 'SnapshotRefused';
  }
}

/** What a fetched snapshot must be to be used. */
export interface Expectation {
  /** The cluster the data dir already knows (null: an empty data dir knows none, and takes any). */
  readonly clusterId: string | null;
  /** The mirrored ranges this proxy serves (KeyRanges.describe()); null: any. */
  readonly scope: string | null;
  /** Only a snapshot newer than this is worth fetching (0: any). */
  readonly newerThan: number;
  /** The keys one of which must have signed the manifest (--snapshot-verify-key); null: unsigned snapshots are taken. */
  readonly trustedKeys: TrustedKeys | null;
  /** The largest snapshot file taken (--snapshot-max-bytes). */
  readonly maxBytes: number;
  /** Told how many bytes of the snapshot file reached the disk, whether it is then used or refused. */
  readonly onDownloaded?: (bytes: number) => void;
}

export interface FetchedSnapshot {
  readonly manifest: Manifest;
  readonly reader: SnapshotReader;
  readonly bytes: number;
}

/** `latest` as a manifest; null when nothing was published yet. Throws SnapshotRefused when it cannot be read as one. */
export async function fetchLatestManifest(bucket: SnapshotBucket): Promise<Manifest | null> {
  let bytes: Buffer | null;
  try {
    bytes = await bucket.get(LATEST, MAX_MANIFEST_BYTES);
  } catch (error) {
    if (error instanceof ObjectTooLarge) throw new SnapshotRefused(error.message, 0, 'too-large');
    throw error;
  }
  if (bytes === null) return null;
  try {
    return parseManifest(bytes);
  } catch (error) {
    throw new SnapshotRefused(`latest: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Downloads the snapshot `latest` names into `file` and opens it, after
 * checking, in order: the manifest and (with verify keys) its signature,
 * the cluster and keys it covers, its size against the bound (before any of
 * it is downloaded), then its size and SHA-256 against the manifest, and
 * the file's own header and checksum line (the reader checks the last while
 * its records are read: a caller applies them in a way it can drop). Null
 * when nothing newer than expected is published.
 */
export async function fetchPublishedSnapshot(bucket: SnapshotBucket, file: string, expect: Expectation): Promise<FetchedSnapshot | null> {
  const manifest = await fetchLatestManifest(bucket);
  if (manifest === null || Number(manifest.revision) <= expect.newerThan) return null;
  const signed = expect.trustedKeys !== null;
  if (expect.trustedKeys !== null) {
    const check = checkSignature(manifest, expect.trustedKeys);
    // Revision 0: nothing an unverified manifest says is remembered, so a forged one cannot hold back a genuine snapshot.
    if (!check.ok) throw new SnapshotRefused(`latest (revision ${manifest.revision}, publisher ${manifest.publisher}): ${check.reason}`, 0, 'bad-signature');
  }
  const revision = Number(manifest.revision);
  if (expect.clusterId !== null && manifest.cluster_id !== expect.clusterId) {
    throw new SnapshotRefused(`latest is a snapshot of cluster ${manifest.cluster_id}; this data dir holds cluster ${expect.clusterId}`, revision);
  }
  if (expect.scope !== null && manifest.scope !== expect.scope) throw new SnapshotRefused(`latest holds ${manifest.scope}; this proxy mirrors ${expect.scope}`, revision);
  const { name } = manifest.snapshot;
  if (manifest.snapshot.bytes > expect.maxBytes) {
    throw new SnapshotRefused(`${name}: ${manifest.snapshot.bytes} bytes, more than --snapshot-max-bytes ${expect.maxBytes}; not downloaded`, revision, 'too-large');
  }
  let written;
  try {
    written = await bucket.download(name, file, expect.maxBytes);
  } catch (error) {
    if (!(error instanceof ObjectTooLarge)) throw error;
    // The store sent more than it said it would: stopped at the bound, and what reached the disk is told.
    if (error.written > 0) expect.onDownloaded?.(error.written);
    throw new SnapshotRefused(`${error.message} (--snapshot-max-bytes); its manifest says ${manifest.snapshot.bytes}`, revision, 'too-large');
  }
  if (written === null) throw new SnapshotRefused(`${name}, named by latest, is missing`, revision);
  expect.onDownloaded?.(written.bytes);
  if (written.bytes !== manifest.snapshot.bytes) {
    throw new SnapshotRefused(`${name}: ${written.bytes} bytes, its ${signed ? 'signed ' : ''}manifest says ${manifest.snapshot.bytes} (truncated?)`, revision, signed ? 'bad-signature' : 'refused');
  }
  if (written.sha256 !== manifest.snapshot.sha256) {
    // With keys, the file is not the one that was signed: whoever wrote it, it is not trusted.
    throw new SnapshotRefused(`${name}: SHA-256 differs from its ${signed ? 'signed manifest (not the file that was signed)' : 'manifest (damaged)'}`, revision, signed ? 'bad-signature' : 'refused');
  }
  let reader: SnapshotReader;
  try {
    reader = await openSnapshot(file);
  } catch (error) {
    throw new SnapshotRefused(error instanceof SnapshotError ? error.message : String(error), revision);
  }
  if (reader.header.cluster_id !== manifest.cluster_id || reader.header.revision !== manifest.revision || reader.header.scope !== manifest.scope) {
    throw new SnapshotRefused(`${name}: its header does not match its manifest`, revision);
  }
  return { manifest, reader, bytes: written.bytes };
}
