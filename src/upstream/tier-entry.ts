// One registration of a proxy under --resolver-prefix, in the form etcd
// grpc-proxy writes and reads (its endpoints manager's JSON), so a tier may
// mix both kinds of proxy: the key is `<prefix>/<address>`, the value
// {"Op":0,"Addr":"<address>","Metadata":"{\"name\":\"<hostname>\"}"}.
// Anyone who may write under the prefix writes what is read back here, so
// every entry is checked and bounded, and one that does not parse is skipped.
import { createHash } from 'node:crypto';

/** The most registrations a MemberList lists (a tier has tens of proxies; this leaves room without letting the answer grow without end). */
export const MAX_TIER_ENTRIES = 1000;
/** The largest key or value of a registration taken; what grpc-proxy writes is well under 200 bytes. */
export const MAX_TIER_ENTRY_BYTES = 4096;
const MAX_ADDR_CHARS = 512;
const MAX_NAME_CHARS = 256;

/** The endpoints manager's "Add" operation (its "Delete" is never stored). */
const OP_ADD = 0;

/** A registered proxy, as MemberList lists it. */
export interface TierEntry {
  /** The client URL (or host:port, as grpc-proxy's default advertises) clients dial. */
  readonly addr: string;
  /** Its host's name, from the registration's metadata; the address when there is none. */
  readonly name: string;
}

/** The key a proxy registers under: grpc-proxy's prefix + "/" + address. */
export function registrationKey(prefix: string, addr: string): string {
  return `${prefix}/${addr}`;
}

/** The first key after every registration under `prefix`, and the first one: the range to read them from. */
export function registrationRange(prefix: string): { start: Buffer; end: Buffer } {
  // '/' + 1 is '0': every key that starts with `${prefix}/` sorts below `${prefix}0`.
  return { start: Buffer.from(`${prefix}/`), end: Buffer.from(`${prefix}0`) };
}

/** The value grpc-proxy's endpoints manager writes: its metadata is a JSON string inside the JSON. */
export function registrationValue(addr: string, name: string): string {
  return JSON.stringify({ Op: OP_ADD, Addr: addr, Metadata: JSON.stringify({ name }) });
}

/** The registration a stored key and value hold, or null for anything that is none (too big, not JSON, no usable address). */
export function readTierEntry(key: Buffer, value: Buffer): TierEntry | null {
  if (key.length > MAX_TIER_ENTRY_BYTES || value.length > MAX_TIER_ENTRY_BYTES) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
  const fields = parsed as { Op?: unknown; Addr?: unknown; Metadata?: unknown };
  if (fields.Op !== undefined && fields.Op !== OP_ADD) return null;
  if (typeof fields.Addr !== 'string' || !usableAddr(fields.Addr)) return null;
  return { addr: fields.Addr, name: nameIn(fields.Metadata) ?? fields.Addr };
}

/** An http(s) URL with a host, or host:port as grpc-proxy advertises by default; nothing else is handed to clients to dial. */
function usableAddr(addr: string): boolean {
  if (addr.length === 0 || addr.length > MAX_ADDR_CHARS || /[\s\u0000-\u001f\u007f]/.test(addr)) return false;
  if (/^[A-Za-z0-9.-]+:\d{1,5}$/.test(addr) || /^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/.test(addr)) return true;
  try {
    const url = new URL(addr);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.host !== '';
  } catch {
    return false;
  }
}

/** The host name in a registration's metadata: a JSON string (grpc-proxy's) or an object holding `name`. */
function nameIn(metadata: unknown): string | null {
  let holder: unknown = metadata;
  if (typeof metadata === 'string') {
    if (metadata.length > MAX_TIER_ENTRY_BYTES) return null;
    try {
      holder = JSON.parse(metadata);
    } catch {
      return null;
    }
  }
  if (typeof holder !== 'object' || holder === null) return null;
  const name = (holder as { name?: unknown }).name;
  if (typeof name !== 'string' || name === '' || name.length > MAX_NAME_CHARS || /[\u0000-\u001f\u007f]/.test(name)) return null;
  return name;
}

/**
 * A member ID for a registered address: the same on every proxy of the tier
 * and never 0. grpc-proxy lists every registration with ID 0; clients that
 * tell members apart by ID (etcdctl's table, a client's dedup) would see one.
 */
export function tierMemberId(addr: string): string {
  const id = createHash('sha256').update(addr).digest().readBigUInt64BE(0);
  return (id === 0n ? 1n : id).toString();
}
