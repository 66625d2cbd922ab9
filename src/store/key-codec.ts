import { createHash } from 'node:crypto';

/**
 * LMDB refuses keys over 1 978 bytes; etcd accepts keys up to its request
 * size. Keys up to INLINE_KEY_BYTES are stored as they are. A longer key is
 * stored as its first INLINE_KEY_BYTES bytes plus a digest of the whole key
 * (the record keeps the full key), so it still sorts among the others by
 * those first bytes; only long keys sharing all of them can be out of order,
 * and range scans sort such runs by the full key.
 */
export const INLINE_KEY_BYTES = 1_900;
const DIGEST_BYTES = 16;
/** Stored keys of exactly this length are long keys (no inline key is this long). */
export const LONG_STORE_KEY_BYTES = INLINE_KEY_BYTES + DIGEST_BYTES;

export function toStoreKey(key: Buffer): Buffer {
  if (key.length <= INLINE_KEY_BYTES) return key;
  const digest = createHash('sha256').update(key).digest().subarray(0, DIGEST_BYTES);
  return Buffer.concat([key.subarray(0, INLINE_KEY_BYTES), digest]);
}

export function isLongStoreKey(storeKey: Buffer): boolean {
  return storeKey.length === LONG_STORE_KEY_BYTES;
}

/** The part of a stored key that sorts in etcd's byte order. */
export function sortablePrefix(storeKey: Buffer): Buffer {
  return isLongStoreKey(storeKey) ? storeKey.subarray(0, INLINE_KEY_BYTES) : storeKey;
}

/**
 * Where an LMDB scan for keys >= `key` must start: a long key's stored form
 * sorts by digest among keys sharing its first bytes, so the scan starts at
 * those bytes and the caller filters by the full key.
 */
export function scanStart(key: Buffer): Buffer {
  return key.length <= INLINE_KEY_BYTES ? key : key.subarray(0, INLINE_KEY_BYTES);
}

/**
 * True once a scan in LMDB order has passed every key < `end` (etcd's
 * exclusive range end). For an inline end, LMDB order decides: any stored key
 * at or above it, long or not, holds a full key at or above it. For a long
 * end, only keys whose sortable prefix is above the end's first bytes are
 * certainly past; those equal to it are filtered by their full key.
 */
export function isPastEnd(storeKey: Buffer, end: Buffer): boolean {
  if (end.length <= INLINE_KEY_BYTES) return Buffer.compare(storeKey, end) >= 0;
  return Buffer.compare(sortablePrefix(storeKey), end.subarray(0, INLINE_KEY_BYTES)) > 0;
}
