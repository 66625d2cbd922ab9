import { createPublicKey, type KeyObject } from 'node:crypto';
import { keyIdOf, readEd25519PrivateKey, readEd25519PublicKey } from '../files/ed25519-key-file';
import type { SnapshotSigner, TrustedKeys } from './manifest-signature';

/** A publisher's --snapshot-sign-key, ready to sign. Throws with what is wrong with the file. */
export function loadSnapshotSigner(file: string): SnapshotSigner {
  const privateKey = readEd25519PrivateKey(file);
  const publicKey = createPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

/** --snapshot-verify-key: one public key per file, by key id; null for no file (unsigned snapshots are taken). */
export function loadTrustedKeys(files: readonly string[]): TrustedKeys | null {
  if (files.length === 0) return null;
  const keys = new Map<string, KeyObject>();
  for (const file of files) {
    try {
      const key = readEd25519PublicKey(file);
      keys.set(keyIdOf(key), key);
    } catch (error) {
      throw new Error(`${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return keys;
}

/**
 * What a signing publisher may point `latest` at: a manifest signed by its
 * own key or by one it verifies (the keys of the other publishers, when
 * they sign with others), never one it cannot check, so a forged `latest`
 * neither stops it publishing nor is copied by it. Null: no signing key,
 * every manifest is taken as before.
 */
export function publisherTrust(signer: SnapshotSigner | null, trusted: TrustedKeys | null): TrustedKeys | null {
  if (signer === null) return null;
  return new Map<string, KeyObject>([...(trusted ?? []), [signer.keyId, signer.publicKey]]);
}
