import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { SnapshotHeader } from '../snapshot/format';
import { ObjectStoreError, type SnapshotBucket } from './bucket';
import {
  LATEST,
  MANIFEST_FORMAT,
  MAX_MANIFEST_BYTES,
  MANIFEST_VERSION,
  SNAPSHOTS,
  apisixName,
  baseName,
  manifestName,
  parseManifest,
  parseName,
  snapshotName,
  type Manifest,
  type ParsedName,
  type PublishedObject,
} from './manifest';
import { checkSignature, signManifest, type SnapshotSigner, type TrustedKeys } from './manifest-signature';

export interface Publication {
  /** A snapshot file, already written and checked (snapshot/save.ts). */
  readonly file: string;
  readonly header: SnapshotHeader;
  /** APISIX's apisix.yaml for the same revision, or null. */
  readonly apisixYaml: string | null;
  /** Who publishes: part of every object name, so publishers never overwrite each other. */
  readonly publisher: string;
  /** How many published snapshots to keep; older ones are deleted. */
  readonly keep: number;
  /** --snapshot-sign-key: the manifest is signed with it; null: published unsigned. */
  readonly signer: SnapshotSigner | null;
  /** What `latest` may name (snapshot-keys.ts publisherTrust): manifests signed by one of these; null: any. */
  readonly trust: TrustedKeys | null;
  /**
   * etcd's revision as its members tell it now (null: no majority
   * answered). A manifest found past it when asked after the manifest was
   * read is of a history etcd no longer has (restored from a backup since:
   * someone published it when etcd had that revision): it keeps no snapshot
   * from being published, `latest` never names it, and it is pruned.
   */
  readonly clusterRevision: () => Promise<number | null>;
}

/** Which of the revisions just read are of a history etcd no longer has; etcd is asked only when one is past the snapshot's. */
async function lostHistory(publication: Publication, revisions: readonly number[]): Promise<(revision: number) => boolean> {
  const own = Number(publication.header.revision);
  if (revisions.every((revision) => revision <= own)) return () => false;
  const current = await publication.clusterRevision();
  return (revision) => current !== null && revision > current;
}

export type PublishResult = { readonly kind: 'published'; readonly bytes: number; readonly latest: Manifest } | { readonly kind: 'skipped'; readonly latest: Manifest };

async function sha256OfFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), bytes: (await stat(file)).size };
}

/** A manifest as read from the bucket; null when it is not one, or (with `trust`) not signed by a trusted key. */
async function readManifest(bucket: SnapshotBucket, name: string, trust: TrustedKeys | null): Promise<Manifest | null> {
  let manifest: Manifest;
  try {
    const bytes = await bucket.get(name, MAX_MANIFEST_BYTES);
    if (bytes === null) return null;
    manifest = parseManifest(bytes);
  } catch (error) {
    if (error instanceof ObjectStoreError) throw error;
    return null; // damaged, or far too big to be a manifest
  }
  return trust === null || checkSignature(manifest, trust).ok ? manifest : null;
}

/**
 * `latest` as it stands, or null when there is none or it cannot be read as
 * a manifest (a new one replaces it); with `trust`, also when no trusted key
 * signed it, so a planted `latest` neither stops a signing publisher nor
 * stays.
 */
export function readLatest(bucket: SnapshotBucket, trust: TrustedKeys | null = null): Promise<Manifest | null> {
  return readManifest(bucket, LATEST, trust);
}

/**
 * Publishes one snapshot: its objects, its manifest, then `latest`. A
 * snapshot of the cluster `latest` names that is not newer than it is not
 * uploaded at all, so any number of publishers is harmless. `latest` is set to
 * the newest manifest of this cluster found in the bucket (not merely this
 * one), and checked once more after it is written: two publishers that
 * cross end with `latest` at the newer of their revisions.
 */
export async function publishSnapshot(bucket: SnapshotBucket, publication: Publication): Promise<PublishResult> {
  const { header } = publication;
  const revision = Number(header.revision);
  const before = await readLatest(bucket, publication.trust);
  if (before !== null && before.cluster_id === header.cluster_id && Number(before.revision) >= revision) {
    const lost = await lostHistory(publication, [Number(before.revision)]);
    if (!lost(Number(before.revision))) return { kind: 'skipped', latest: before };
  }

  const base = baseName(revision, header.cluster_id, publication.publisher);
  const snapshotFile = await sha256OfFile(publication.file);
  const snapshot: PublishedObject = { name: snapshotName(base), ...snapshotFile };
  await bucket.putFile(snapshot.name, publication.file);
  let apisix: PublishedObject | null = null;
  let bytes = snapshot.bytes;
  if (publication.apisixYaml !== null) {
    const body = Buffer.from(publication.apisixYaml);
    apisix = { name: apisixName(base), sha256: createHash('sha256').update(body).digest('hex'), bytes: body.length };
    await bucket.put(apisix.name, body);
    bytes += body.length;
  }
  const unsigned: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    revision: header.revision,
    cluster_id: header.cluster_id,
    scope: header.scope,
    snapshot,
    apisix,
    published_at: new Date().toISOString(),
    publisher: publication.publisher,
  };
  const manifest = publication.signer === null ? unsigned : signManifest(unsigned, publication.signer);
  await bucket.put(manifestName(base), Buffer.from(JSON.stringify(manifest)));
  let latest = await pointLatestAtNewest(bucket, publication, manifest);
  // Another publisher may have set `latest` to an older manifest between our listing and our write.
  latest = await pointLatestAtNewest(bucket, publication, latest, true);
  await prune(bucket, publication, latest);
  return { kind: 'published', bytes, latest };
}

/** The manifests under snapshots/, newest first. */
async function listManifests(bucket: SnapshotBucket): Promise<ParsedName[]> {
  const names = (await bucket.list(SNAPSHOTS)).map((object) => parseName(object.name)).filter((name): name is ParsedName => name !== null && name.isManifest);
  return names.sort((a, b) => b.revision - a.revision || (a.base < b.base ? 1 : -1));
}

/**
 * Sets `latest` to the newest manifest of the cluster (at least `fallback`)
 * that `trust` takes and of etcd's history; with `onlyIfNewer`, writes only
 * when that is not already `fallback`.
 */
async function pointLatestAtNewest(bucket: SnapshotBucket, publication: Publication, fallback: Manifest, onlyIfNewer = false): Promise<Manifest> {
  const clusterId = publication.header.cluster_id;
  const trust = publication.trust;
  let newest = fallback;
  const names = await listManifests(bucket);
  const lost = await lostHistory(publication, names.map((name) => name.revision));
  for (const name of names) {
    if (name.clusterId !== clusterId || name.revision <= Number(newest.revision) || lost(name.revision)) continue;
    // A damaged manifest, or (signing) one no trusted key signed, is never pointed at.
    const found = await readManifest(bucket, manifestName(name.base), trust);
    if (found === null) continue;
    newest = found;
    break;
  }
  if (onlyIfNewer && newest === fallback) {
    const current = await readLatest(bucket, trust);
    if (current !== null && current.cluster_id === clusterId && Number(current.revision) >= Number(fallback.revision)) {
      const lostNow = await lostHistory(publication, [Number(current.revision)]);
      if (!lostNow(Number(current.revision))) return current;
    }
  }
  await bucket.put(LATEST, Buffer.from(JSON.stringify(newest)));
  return newest;
}

/**
 * Keeps the newest `keep` manifests of etcd's history and their objects,
 * and what `latest` names. Objects without a manifest are an upload cut
 * short (or one in progress): they go once they are older than every
 * manifest kept.
 */
async function prune(bucket: SnapshotBucket, publication: Publication, latest: Manifest): Promise<void> {
  const objects = (await bucket.list(SNAPSHOTS)).map((object) => parseName(object.name)).filter((name): name is ParsedName => name !== null);
  const lost = await lostHistory(publication, objects.map((name) => name.revision));
  const manifests = objects.filter((name) => name.isManifest).sort((a, b) => b.revision - a.revision || (a.base < b.base ? 1 : -1));
  const kept = new Set(
    manifests
      .filter((name) => !lost(name.revision))
      .slice(0, publication.keep)
      .map((name) => name.base),
  );
  kept.add(latest.snapshot.name.replace(/\.snapshot\.jsonl$/, ''));
  const oldestKept = Math.min(...manifests.filter((name) => kept.has(name.base)).map((name) => name.revision));
  const withManifest = new Set(manifests.map((name) => name.base));
  const doomed = objects.filter((name) => !kept.has(name.base) && (withManifest.has(name.base) || name.revision < oldestKept || lost(name.revision)));
  // Manifests first: a manifest never names an object that is gone.
  const manifestsGone = doomed.filter((name) => name.isManifest).map((name) => name.name);
  const objectsGone = doomed.filter((name) => !name.isManifest).map((name) => name.name);
  if (manifestsGone.length > 0) await bucket.delete(manifestsGone);
  if (objectsGone.length > 0) await bucket.delete(objectsGone);
}
