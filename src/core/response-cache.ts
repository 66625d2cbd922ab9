import { allocateFramed } from '../etcd/grpc-frame';

/** The default of --response-cache-bytes. */
export const DEFAULT_RESPONSE_CACHE_BYTES = 128 * 1024 * 1024;

/**
 * Keys an answer depends on: [key, end) with end null for "every key from
 * key on", or the single key when `single`.
 */
export interface KeySpan {
  readonly key: Buffer;
  readonly end: Buffer | null;
  readonly single: boolean;
}

/**
 * What an answer stays true for. `spans`: until an event touches one of these
 * keys; only the header's revision changes meanwhile, so the body is kept and
 * a fresh header put in front. `revision-exact`: only at the revision it was
 * made at (a Txn's nested answers carry the revision themselves).
 */
export type Validity = { readonly kind: 'spans'; readonly spans: readonly KeySpan[] } | { readonly kind: 'revision-exact' };

interface Entry {
  /** The request's bytes as a string: its key in the map. */
  readonly id: string;
  /** Which read it answers (the RPC's path): the same bytes may be another kind of request. */
  readonly kind: string;
  readonly validity: Validity;
  /** The answer without its header; for revision-exact entries, the whole answer. */
  readonly body: Buffer;
  /** The whole answer as last sent, and the mirror revision its header names. */
  full: Buffer;
  fullRevision: number;
  /** The JSON gateway's encoding of `full`, made on first use. */
  json: Buffer | undefined;
  bytes: number;
  /** Read since eviction last passed it: it gets another round (second chance) instead of going. */
  used: boolean;
}

/**
 * Encoded answers of mirror reads, so that identical reads at an unchanged
 * state cost nothing: gateways ask the same questions over and over (every
 * worker of every gateway lists the same prefix). Keyed by the request's
 * exact bytes (as a latin1 string) and kind; an entry is dropped when an event touches its keys
 * (a change elsewhere only moves the header's revision). Least recently used
 * entries go first once the byte budget is spent. Answers depend on nothing
 * but the request and the mirror: the mirror serves no read that a user's
 * permissions decide (auth on upstream forwards every read).
 */
export class ResponseCache {
  private readonly entries = new Map<string, Entry>();
  /** From a whole answer handed out to its entry, so the JSON gateway can keep its text beside it. */
  private readonly byAnswer = new WeakMap<Buffer, Entry>();
  private bytes = 0;

  constructor(private readonly budgetBytes: number = DEFAULT_RESPONSE_CACHE_BYTES) {}

  /**
   * The answer to `request` at mirror revision `revision`, if one is kept;
   * `header` encodes the header field for a kept body whose revision moved.
   */
  get(kind: string, request: string, revision: number, header: () => Buffer): Buffer | undefined {
    const entry = this.entries.get(request);
    if (entry === undefined || entry.kind !== kind) return undefined;
    entry.used = true;
    if (entry.fullRevision === revision) return entry.full;
    // A revision below the answer's own: the store was replaced (etcd restored), the answer means nothing now.
    if (entry.validity.kind === 'revision-exact' || revision < entry.fullRevision) {
      this.drop(entry);
      return undefined;
    }
    this.resize(entry, () => {
      entry.full = joined(header(), entry.body);
      entry.fullRevision = revision;
      entry.json = undefined;
    });
    this.byAnswer.set(entry.full, entry);
    return entry.full;
  }

  /**
   * Keeps an answer made at `revision`: `header` and `body` concatenated are
   * the whole answer (protobuf merges concatenated encodings), which is
   * returned. Answers beyond the budget are not kept.
   */
  set(kind: string, request: string, revision: number, validity: Validity, header: Buffer, body: Buffer): Buffer {
    const full = joined(header, body);
    if (this.budgetBytes === 0) return full;
    const id = request;
    const previous = this.entries.get(id);
    if (previous !== undefined) this.drop(previous);
    const kept = validity.kind === 'revision-exact' ? full : body;
    const entry: Entry = { id, kind, validity, body: kept, full, fullRevision: revision, json: undefined, bytes: 0, used: false };
    entry.bytes = sizeOf(entry);
    if (entry.bytes > this.budgetBytes) return full;
    this.entries.set(id, entry);
    this.byAnswer.set(full, entry);
    this.bytes += entry.bytes;
    this.evict();
    return full;
  }

  /**
   * The JSON of an answer this cache handed out (made once, kept with the
   * entry while the answer is current), or of any other answer (made).
   */
  json(answer: Buffer, make: () => Buffer): Buffer {
    const entry = this.byAnswer.get(answer);
    if (entry === undefined || entry.full !== answer || this.entries.get(entry.id) !== entry) return make();
    if (entry.json === undefined) {
      const json = make();
      this.resize(entry, () => (entry.json = json));
      return json;
    }
    return entry.json;
  }

  /** Events touched these keys: answers that depend on any of them are no longer true. */
  invalidate(keys: readonly Buffer[]): void {
    if (keys.length === 0) return;
    for (const entry of [...this.entries.values()]) {
      if (entry.validity.kind === 'spans' && entry.validity.spans.some((span) => keys.some((key) => inSpan(span, key)))) this.drop(entry);
    }
  }

  /** After a re-list the content at a revision may have changed (a repair): nothing kept holds. */
  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.entries.size;
  }

  get usedBytes(): number {
    return this.bytes;
  }

  private resize(entry: Entry, change: () => void): void {
    this.bytes -= entry.bytes;
    change();
    entry.bytes = sizeOf(entry);
    this.bytes += entry.bytes;
    this.evict();
  }

  private drop(entry: Entry): void {
    if (this.entries.get(entry.id) !== entry) return;
    this.entries.delete(entry.id);
    this.bytes -= entry.bytes;
  }

  /**
   * Oldest first, but an entry read since eviction last came by moves to the
   * back instead (second chance): close to least-recently-used, without
   * reordering the map on every hit.
   */
  private evict(): void {
    while (this.bytes > this.budgetBytes) {
      const oldest = this.entries.values().next();
      if (oldest.done === true) return;
      const entry = oldest.value;
      if (entry.used) {
        entry.used = false;
        this.entries.delete(entry.id);
        this.entries.set(entry.id, entry);
      } else {
        this.drop(entry);
      }
    }
  }

}

/** Answers this large are kept with their gRPC frame around them, so sending them again copies nothing. */
const FRAMED_ANSWER_BYTES = 16 * 1024;

function joined(header: Buffer, body: Buffer): Buffer {
  const length = header.length + body.length;
  if (length < FRAMED_ANSWER_BYTES) return Buffer.concat([header, body], length);
  const whole = allocateFramed(length);
  header.copy(whole, 0);
  body.copy(whole, header.length);
  return whole;
}

function sizeOf(entry: Entry): number {
  return (entry.full === entry.body ? 0 : entry.full.length) + entry.body.length + (entry.json?.length ?? 0);
}

function inSpan(span: KeySpan, key: Buffer): boolean {
  if (span.single) return key.equals(span.key);
  return Buffer.compare(key, span.key) >= 0 && (span.end === null || Buffer.compare(key, span.end) < 0);
}
