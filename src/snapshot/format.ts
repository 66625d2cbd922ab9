import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { encodeKeyValue, type EncodedKeyValue } from '../etcd/kv-bytes';
import type { KeyValueFields, HeaderIdentity } from '../etcd/records';

/**
 * The snapshot file: JSON lines, so a keyspace of any size streams through
 * without being held in memory. The first line describes the snapshot, one
 * line per key follows (every KeyValue field: bytes as base64, int64 as
 * decimal strings, as etcd's JSON gateway writes them), and the last line
 * counts the keys and carries the SHA-256 of every byte before it. A file
 * without that last line, or whose bytes do not match it, is refused whole.
 */
export const SNAPSHOT_FORMAT = 'etcd-cache-proxy/snapshot';
export const SNAPSHOT_VERSION = 1;

export interface SnapshotHeader {
  readonly format: typeof SNAPSHOT_FORMAT;
  readonly version: number;
  /** The revision the keyspace is as of. */
  readonly revision: string;
  readonly compact_revision: string;
  readonly cluster_id: string;
  readonly member_id: string;
  readonly raft_term: string;
  /** Which keys it covers: 'all', or the mirrored prefixes (KeyRanges.describe). */
  readonly scope: string;
  readonly created_at: string;
  /** Where it was taken from: a data dir or a cluster's endpoint. */
  readonly source: string;
}

interface WireKeyValue {
  readonly key: string;
  readonly create_revision: string;
  readonly mod_revision: string;
  readonly version: string;
  readonly value: string;
  readonly lease: string;
}

interface Trailer {
  readonly keys: number;
  readonly sha256: string;
}

/** A snapshot file that cannot be trusted: truncated, corrupted, or not a snapshot at all. */
export class SnapshotError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'SnapshotError';
  }
}

export function headerLine(header: SnapshotHeader): string {
  return `${JSON.stringify({ snapshot: header })}\n`;
}

export function keyLine(record: KeyValueFields): string {
  const kv: WireKeyValue = {
    key: record.key.toString('base64'),
    create_revision: String(record.create_revision),
    mod_revision: String(record.mod_revision),
    version: String(record.version),
    value: record.value.toString('base64'),
    lease: record.lease,
  };
  return `${JSON.stringify({ kv })}\n`;
}

export function trailerLine(keys: number, hash: Hash): string {
  const end: Trailer = { keys, sha256: hash.digest('hex') };
  return `${JSON.stringify({ end })}\n`;
}

export function headerIdentityOf(header: SnapshotHeader): HeaderIdentity {
  return { cluster_id: header.cluster_id, member_id: header.member_id, raft_term: header.raft_term };
}

const DECIMAL = /^\d+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function parseHeader(file: string, value: unknown): SnapshotHeader {
  const header = value as Partial<SnapshotHeader> | null;
  if (header === null || typeof header !== 'object' || header.format !== SNAPSHOT_FORMAT) throw new SnapshotError(file, 'not an etcd-cache-proxy snapshot (first line)');
  if (header.version !== SNAPSHOT_VERSION) throw new SnapshotError(file, `snapshot format version ${String(header.version)}, this version reads ${SNAPSHOT_VERSION}`);
  for (const field of ['revision', 'compact_revision', 'cluster_id', 'member_id', 'raft_term'] as const) {
    if (typeof header[field] !== 'string' || !DECIMAL.test(header[field])) throw new SnapshotError(file, `header field ${field} is not a decimal string`);
  }
  if (typeof header.scope !== 'string') throw new SnapshotError(file, 'header field scope is missing');
  return header as SnapshotHeader;
}

/** A key line as the store keeps it: etcd's encoding of the KeyValue. */
function parseKeyValue(file: string, line: number, value: unknown): EncodedKeyValue {
  const kv = value as Partial<WireKeyValue> | null;
  const bad = (what: string): SnapshotError => new SnapshotError(file, `line ${line}: ${what}`);
  if (kv === null || typeof kv !== 'object') throw bad('not a key');
  for (const field of ['create_revision', 'mod_revision', 'version', 'lease'] as const) {
    if (typeof kv[field] !== 'string' || !DECIMAL.test(kv[field])) throw bad(`${field} is not a decimal string`);
  }
  for (const field of ['key', 'value'] as const) {
    if (typeof kv[field] !== 'string' || !BASE64.test(kv[field])) throw bad(`${field} is not base64`);
  }
  const key = Buffer.from(kv.key as string, 'base64');
  if (key.length === 0) throw bad('empty key');
  return encodeKeyValue({
    key,
    create_revision: Number(kv.create_revision),
    mod_revision: Number(kv.mod_revision),
    version: Number(kv.version),
    value: Buffer.from(kv.value as string, 'base64'),
    lease: kv.lease as string,
  });
}

/** What reading a snapshot yields: the header first, then the keys; the trailer is checked at the end. */
export interface SnapshotReader {
  readonly header: SnapshotHeader;
  /** Every key, in file order. Throws SnapshotError when the file turns out truncated or corrupt, at the latest after the last key. */
  records(): AsyncGenerator<EncodedKeyValue>;
}

/**
 * Opens a snapshot file. Nothing read from it is trustworthy until records()
 * has run to its end without throwing: a caller applies what it reads in a
 * way it can drop (an uncommitted table) until then.
 */
export async function openSnapshot(file: string): Promise<SnapshotReader> {
  const stream = createReadStream(file);
  const lines = createInterface({ input: stream, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const hash = createHash('sha256');
  let lineNumber = 0;
  const next = async (): Promise<string | null> => {
    const { value, done } = await lines.next();
    if (done === true) return null;
    lineNumber += 1;
    return value;
  };
  const parse = (text: string): Record<string, unknown> => {
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      return parsed as Record<string, unknown>;
    } catch {
      throw new SnapshotError(file, `line ${lineNumber}: not JSON (a truncated or damaged file?)`);
    }
  };

  let first: string | null;
  try {
    first = await next();
  } catch (error) {
    throw new SnapshotError(file, error instanceof Error ? error.message : String(error));
  }
  if (first === null) {
    stream.destroy();
    throw new SnapshotError(file, 'empty file');
  }
  let header: SnapshotHeader;
  try {
    header = parseHeader(file, parse(first).snapshot);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  hash.update(`${first}\n`);

  return {
    header,
    async *records() {
      let keys = 0;
      try {
        for (let line = await next(); line !== null; line = await next()) {
          const entry = parse(line);
          if ('end' in entry) {
            const trailer = entry.end as Partial<Trailer> | null;
            const digest = hash.digest('hex');
            if (trailer?.keys !== keys) throw new SnapshotError(file, `the file holds ${keys} keys, its last line says ${String(trailer?.keys)}`);
            if (trailer.sha256 !== digest) throw new SnapshotError(file, 'checksum mismatch: the file was changed or damaged');
            if ((await next()) !== null) throw new SnapshotError(file, `line ${lineNumber}: data after the last line`);
            return;
          }
          hash.update(`${line}\n`);
          keys += 1;
          yield parseKeyValue(file, lineNumber, entry.kv);
        }
        throw new SnapshotError(file, `truncated: ${keys} keys and no closing line`);
      } finally {
        stream.destroy();
      }
    },
  };
}
