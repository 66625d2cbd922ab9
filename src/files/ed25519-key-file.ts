import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/**
 * Ed25519 key files (PEM) for signing published snapshots: read and checked
 * here, once for the configuration's checks and once when the keys are put
 * to use, so a wrong file fails at start with what is wrong with it.
 */

/** A PEM Ed25519 key is about 120 bytes; anything far bigger is not one (and is never read whole). */
const MAX_KEY_FILE_BYTES = 16 * 1024;

function readPem(file: string): string {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    throw new Error('not a readable file');
  }
  if (size > MAX_KEY_FILE_BYTES) throw new Error(`${size} bytes: not a PEM key file`);
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new Error('not a readable file');
  }
}

function requireEd25519(key: KeyObject): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'symmetric'} key, not Ed25519 (make one with 'etcd-cache-proxy snapshot keygen')`);
  return key;
}

/** The private key of a publisher (PEM, PKCS#8). */
export function readEd25519PrivateKey(file: string): KeyObject {
  const pem = readPem(file);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new Error('not a PEM private key (PKCS#8, "BEGIN PRIVATE KEY")');
  }
  return requireEd25519(key);
}

/** A public key that may sign what the proxy takes (PEM, SPKI). A private key is refused: it belongs on publishers only. */
export function readEd25519PublicKey(file: string): KeyObject {
  const pem = readPem(file);
  // createPublicKey would derive the public half of a private key: that file must not be spread to every proxy.
  if (pem.includes('PRIVATE KEY')) throw new Error('holds a private key: give proxies the public key, and the private key to publishers only');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new Error('not a PEM public key (SPKI, "BEGIN PUBLIC KEY")');
  }
  return requireEd25519(key);
}

/** A public key's short name, as manifests and logs carry it: the first 16 hex digits of the SHA-256 of its SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}
