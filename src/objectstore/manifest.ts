/**
 * The bucket layout. Each published snapshot is three objects under
 * `snapshots/`, named by revision (20 digits, so names sort as revisions do),
 * cluster and publisher, so two publishers never write the same name:
 *
 *   snapshots/<revision>-<cluster>-<publisher>.snapshot.jsonl   the snapshot file
 *   snapshots/<revision>-<cluster>-<publisher>.apisix.yaml      APISIX's standalone configuration
 *   snapshots/<revision>-<cluster>-<publisher>.json             its manifest, written last
 *
 * and `latest` is a copy of the newest manifest, written after it. An object
 * appears whole or not at all, so a manifest only ever names objects that
 * are complete, and `latest` only names a manifest's objects. A publisher
 * with a signing key signs each manifest (manifest-signature.ts); proxies
 * with verify keys take only what such a key signed.
 */
export const LATEST = 'latest';
export const SNAPSHOTS = 'snapshots/';
export const MANIFEST_FORMAT = 'etcd-cache-proxy/published-snapshot';
export const MANIFEST_VERSION = 1;
/** `latest` and the manifests are well under 1 KiB; this bound keeps a planted giant out of memory. */
export const MAX_MANIFEST_BYTES = 64 * 1024;

export interface PublishedObject {
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
}

export interface Manifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: number;
  readonly revision: string;
  readonly cluster_id: string;
  /** The mirrored key ranges the snapshot holds (the snapshot header's scope). */
  readonly scope: string;
  readonly snapshot: PublishedObject;
  readonly apisix: PublishedObject | null;
  readonly published_at: string;
  readonly publisher: string;
  /** Set by a publisher with --snapshot-sign-key; absent on unsigned manifests. As read, not yet checked (manifest-signature.ts checks it). */
  readonly signature?: ManifestSignature;
}

/** An Ed25519 signature of a manifest's signed form (manifest-signature.ts). */
export interface ManifestSignature {
  /** Which key signed: the first 16 hex digits of the SHA-256 of its public key (SPKI DER). */
  readonly key_id: string;
  /** The 64-byte signature, base64. */
  readonly ed25519: string;
}

/** The common part of one published snapshot's object names. */
export function baseName(revision: number, clusterId: string, publisher: string): string {
  return `${SNAPSHOTS}${String(revision).padStart(20, '0')}-${clusterId}-${publisher}`;
}

export const manifestName = (base: string): string => `${base}.json`;
export const snapshotName = (base: string): string => `${base}.snapshot.jsonl`;
export const apisixName = (base: string): string => `${base}.apisix.yaml`;

export interface ParsedName {
  /** The whole object name. */
  readonly name: string;
  readonly base: string;
  readonly revision: number;
  readonly clusterId: string;
  readonly isManifest: boolean;
}

/** What an object name under snapshots/ says of itself; null for names this layout does not make. */
export function parseName(name: string): ParsedName | null {
  const match = /^(snapshots\/(\d{20})-(\d+)-([A-Za-z0-9_-]+))\.(json|snapshot\.jsonl|apisix\.yaml)$/.exec(name);
  if (match === null) return null;
  return { name, base: match[1] ?? '', revision: Number(match[2]), clusterId: match[3] ?? '', isManifest: match[5] === 'json' };
}

const DECIMAL = /^\d+$/;
const SHA256 = /^[0-9a-f]{64}$/;

function isObject(value: unknown): value is PublishedObject {
  const object = value as Partial<PublishedObject> | null;
  return (
    object !== null &&
    typeof object === 'object' &&
    typeof object.name === 'string' &&
    parseName(object.name) !== null &&
    typeof object.sha256 === 'string' &&
    SHA256.test(object.sha256) &&
    Number.isSafeInteger(object.bytes)
  );
}

/** A manifest (or `latest`) as read from the store; throws with what is wrong with it. */
export function parseManifest(bytes: Buffer): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Error('not JSON (a damaged object?)');
  }
  const manifest = value as Partial<Manifest> | null;
  if (manifest === null || typeof manifest !== 'object' || manifest.format !== MANIFEST_FORMAT) throw new Error('not an etcd-cache-proxy manifest');
  if (manifest.version !== MANIFEST_VERSION) throw new Error(`manifest version ${String(manifest.version)}, this version reads ${MANIFEST_VERSION}`);
  for (const field of ['revision', 'cluster_id'] as const) {
    if (typeof manifest[field] !== 'string' || !DECIMAL.test(manifest[field])) throw new Error(`manifest field ${field} is not a decimal string`);
  }
  if (typeof manifest.scope !== 'string') throw new Error('manifest field scope is missing');
  if (!isObject(manifest.snapshot)) throw new Error('manifest names no valid snapshot object');
  if (manifest.apisix !== null && !isObject(manifest.apisix)) throw new Error('manifest names an invalid apisix.yaml object');
  for (const field of ['published_at', 'publisher'] as const) {
    if (typeof manifest[field] !== 'string') throw new Error(`manifest field ${field} is not a string`);
  }
  return manifest as Manifest;
}
