import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { SnapshotError, openSnapshot, type SnapshotReader } from '../snapshot/format';
import type { SnapshotBucket } from './bucket';
import { LATEST, parseManifest, type Manifest } from './manifest';

/** A published snapshot that must not be used: damaged, truncated, another cluster's or other keys. Never retried as is. */
export class SnapshotRefused extends Error {
  constructor(
    message: string,
    /** The revision of the refused snapshot, when it got as far as its manifest: that one is not worth fetching again. */
    readonly revision = 0,
  ) {
    super(message);
    this.name = 'SnapshotRefused';
  }
}

/** What a fetched snapshot must be to be used. */
export interface Expectation {
  /** The cluster the data dir already knows (null: an empty data dir takes any). */
  readonly clusterId: string | null;
  /** The mirrored ranges this proxy serves (MirroredRanges.describe()); null: any. */
  readonly scope: string | null;
  /** Only a snapshot newer than this is worth fetching (0: any). */
  readonly newerThan: number;
}

export interface FetchedSnapshot {
  readonly manifest: Manifest;
  readonly reader: SnapshotReader;
  readonly bytes: number;
}

/** `latest` as a manifest; null when nothing was published yet. Throws SnapshotRefused when it cannot be read as one. */
export async function fetchLatestManifest(bucket: SnapshotBucket): Promise<Manifest | null> {
  const bytes = await bucket.get(LATEST);
  if (bytes === null) return null;
  try {
    return parseManifest(bytes);
  } catch (error) {
    throw new SnapshotRefused(`latest: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Downloads the snapshot `latest` names into `file` and opens it, after
 * checking, in order: the manifest, the cluster and keys it covers, its size
 * and SHA-256, and the file's own header and checksum line (the reader
 * checks the last while its records are read: a caller applies them in a way
 * it can drop). Null when nothing newer than expected is published.
 */
export async function fetchPublishedSnapshot(bucket: SnapshotBucket, file: string, expect: Expectation): Promise<FetchedSnapshot | null> {
  const manifest = await fetchLatestManifest(bucket);
  if (manifest === null || Number(manifest.revision) <= expect.newerThan) return null;
  const revision = Number(manifest.revision);
  if (expect.clusterId !== null && manifest.cluster_id !== expect.clusterId) {
    throw new SnapshotRefused(`latest is a snapshot of cluster ${manifest.cluster_id}; this data dir holds cluster ${expect.clusterId}`, revision);
  }
  if (expect.scope !== null && manifest.scope !== expect.scope) throw new SnapshotRefused(`latest holds ${manifest.scope}; this proxy mirrors ${expect.scope}`, revision);
  const body = await bucket.get(manifest.snapshot.name);
  if (body === null) throw new SnapshotRefused(`${manifest.snapshot.name}, named by latest, is missing`, revision);
  if (body.length !== manifest.snapshot.bytes) throw new SnapshotRefused(`${manifest.snapshot.name}: ${body.length} bytes, its manifest says ${manifest.snapshot.bytes} (truncated?)`, revision);
  if (createHash('sha256').update(body).digest('hex') !== manifest.snapshot.sha256) throw new SnapshotRefused(`${manifest.snapshot.name}: SHA-256 differs from its manifest (damaged)`, revision);
  await writeFile(file, body, { mode: 0o600 });
  let reader: SnapshotReader;
  try {
    reader = await openSnapshot(file);
  } catch (error) {
    throw new SnapshotRefused(error instanceof SnapshotError ? error.message : String(error), revision);
  }
  if (reader.header.cluster_id !== manifest.cluster_id || reader.header.revision !== manifest.revision || reader.header.scope !== manifest.scope) {
    throw new SnapshotRefused(`${manifest.snapshot.name}: its header does not match its manifest`, revision);
  }
  return { manifest, reader, bytes: body.length };
}
