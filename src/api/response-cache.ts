/** Bounds of the encoded-response cache. */
export const RESPONSE_CACHE_MAX_ENTRIES = 1_024;
export const RESPONSE_CACHE_MAX_BYTES = 64 * 1024 * 1024;
/** Answers larger than this are not worth keeping (and would push out many small ones). */
const MAX_CACHED_RESPONSE_BYTES = 1024 * 1024;

interface Entry {
  readonly revision: number;
  readonly response: Buffer;
}

/**
 * Encoded answers of mirror reads, keyed by the request's exact bytes and
 * valid only at the mirror revision they were computed at. Gateways ask the
 * same questions over and over (every worker lists the same prefix); at an
 * unchanged revision the answer is the same bytes, so it is sent again
 * without touching LMDB or the encoder. Least recently used entries go first.
 */
export class ResponseCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  get(request: Buffer, revision: number): Buffer | undefined {
    const id = request.toString('latin1');
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    this.entries.delete(id);
    if (entry.revision !== revision) {
      this.bytes -= entry.response.length;
      return undefined;
    }
    this.entries.set(id, entry);
    return entry.response;
  }

  set(request: Buffer, revision: number, response: Buffer): void {
    if (response.length > MAX_CACHED_RESPONSE_BYTES) return;
    const id = request.toString('latin1');
    const previous = this.entries.get(id);
    if (previous !== undefined) {
      this.entries.delete(id);
      this.bytes -= previous.response.length;
    }
    this.entries.set(id, { revision, response });
    this.bytes += response.length;
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= RESPONSE_CACHE_MAX_ENTRIES && this.bytes <= RESPONSE_CACHE_MAX_BYTES) break;
      this.entries.delete(oldest);
      this.bytes -= entry.response.length;
    }
  }

  /** After a re-list the content at a revision may have changed (a repair): nothing cached holds. */
  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.entries.size;
  }
}
