import { sign, verify, type KeyObject } from 'node:crypto';
import type { Manifest } from './manifest';

/**
 * Signed manifests. Bucket write access is given to every publisher, so a
 * checksum proves nothing about who wrote an object: with keys, a proxy
 * takes a snapshot only when its manifest was signed by a key it was given,
 * and the manifest carries the SHA-256 and size of the snapshot file, so
 * the file is bound to the signature too.
 *
 * The signed form is one JSON array of the fields that say what the
 * snapshot is, in a fixed order, each a string, a safe integer or null (as
 * parseManifest checked them), so it is the same bytes wherever it is made:
 *
 *   ["etcd-cache-proxy/published-snapshot-signature/v1", format, version,
 *    revision, cluster_id, scope,
 *    snapshot.name, snapshot.bytes, snapshot.sha256,
 *    apisix.name, apisix.bytes, apisix.sha256 (null without apisix.yaml),
 *    published_at, publisher]
 *
 * The signature is Ed25519 (crypto.sign with no digest: Ed25519 hashes on
 * its own), stored with the signing key's id in the manifest and in `latest`.
 */
const SIGNED_FORM = 'etcd-cache-proxy/published-snapshot-signature/v1';

export function signedBytes(manifest: Manifest): Buffer {
  const { snapshot, apisix } = manifest;
  return Buffer.from(
    JSON.stringify([
      SIGNED_FORM,
      manifest.format,
      manifest.version,
      manifest.revision,
      manifest.cluster_id,
      manifest.scope,
      snapshot.name,
      snapshot.bytes,
      snapshot.sha256,
      apisix?.name ?? null,
      apisix?.bytes ?? null,
      apisix?.sha256 ?? null,
      manifest.published_at,
      manifest.publisher,
    ]),
  );
}

/** A publisher's key (--snapshot-sign-key), with its public half and that half's id. */
export interface SnapshotSigner {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** The public keys a proxy takes signatures of (--snapshot-verify-key), by key id. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/** The manifest with its signature by `signer` (any signature it had is replaced). */
export function signManifest(manifest: Manifest, signer: SnapshotSigner): Manifest {
  const { signature: _previous, ...unsigned } = manifest;
  const value = sign(null, signedBytes(unsigned), signer.privateKey);
  return { ...unsigned, signature: { key_id: signer.keyId, ed25519: value.toString('base64') } };
}

export type SignatureCheck = { readonly ok: true; readonly keyId: string } | { readonly ok: false; readonly reason: string };

const KEY_ID = /^[0-9a-f]{16}$/;
/** 64 bytes in base64. */
const ED25519_SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;

/** Whether a key in `trusted` signed this manifest as it is; else why not, for the log. */
export function checkSignature(manifest: Manifest, trusted: TrustedKeys): SignatureCheck {
  const signature: unknown = manifest.signature;
  if (signature === undefined || signature === null) return { ok: false, reason: 'not signed' };
  const { key_id: keyId, ed25519 } = signature as { key_id?: unknown; ed25519?: unknown };
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId) || typeof ed25519 !== 'string' || !ED25519_SIGNATURE.test(ed25519)) {
    return { ok: false, reason: 'its signature is malformed' };
  }
  const key = trusted.get(keyId);
  if (key === undefined) return { ok: false, reason: `signed by key ${keyId}, which is not one of the verify keys (${[...trusted.keys()].join(', ')})` };
  if (!verify(null, signedBytes(manifest), key, Buffer.from(ed25519, 'base64'))) {
    return { ok: false, reason: `its signature by key ${keyId} does not verify: the manifest was changed after it was signed` };
  }
  return { ok: true, keyId };
}
