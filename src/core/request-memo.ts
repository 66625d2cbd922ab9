import type { EtcdErrorName } from '../etcd/errors';

/** Requests larger than this are decoded each time (a big Txn is rarely sent twice). */
const MEMO_MAX_REQUEST_BYTES = 1_024;
const MEMO_MAX_ENTRIES = 4_096;

/** A request as decoded, with what routing needs to know of it: none of it changes while the proxy runs (whether the mirror holds its keys may, and is asked apart). */
export interface DecodedRead<Req> {
  readonly request: Req;
  /** The request's bytes as a string: the answer cache's key. */
  readonly id: string;
  readonly read: boolean;
  readonly refusal: EtcdErrorName | null;
  readonly revision: number;
  readonly serializable: boolean;
}

/**
 * Decoded requests by their bytes, the oldest out first. The decoded
 * objects are shared, so nothing may change them. Undefined: bytes that are
 * no such request (etcd answers those itself).
 */
export class RequestMemo<Req> {
  private readonly entries = new Map<string, DecodedRead<Req>>();

  constructor(private readonly decode: (bytes: Buffer, id: string) => DecodedRead<Req>) {}

  get(bytes: Buffer): DecodedRead<Req> | undefined {
    const id = bytes.toString('latin1');
    if (bytes.length > MEMO_MAX_REQUEST_BYTES) return this.tryDecode(bytes, id);
    const known = this.entries.get(id);
    if (known !== undefined) return known;
    const decoded = this.tryDecode(bytes, id);
    if (decoded === undefined) return undefined;
    this.entries.set(id, decoded);
    if (this.entries.size > MEMO_MAX_ENTRIES) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
    return decoded;
  }

  private tryDecode(bytes: Buffer, id: string): DecodedRead<Req> | undefined {
    try {
      return this.decode(bytes, id);
    } catch {
      return undefined;
    }
  }
}
