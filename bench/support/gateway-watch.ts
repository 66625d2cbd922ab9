// A gateway's watch on its configuration prefix, as APISIX keeps one: a
// Watch from the revision after the last it saw, opened again a second after
// the stream ends or the watch is cancelled. Records when each value of one
// key first arrived, so a benchmark can tell when every gateway has a write.
import { WatchClient } from '../../test/support/watch-client';

const REOPEN_AFTER_MS = 1_000;

export class GatewayWatch {
  private client: WatchClient | null = null;
  private lastRevision = 0;
  private readonly seen = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  private reopenTimer: NodeJS.Timeout | null = null;
  private readonly endCheck: NodeJS.Timeout;
  private closed = false;
  private watching = false;
  /** Times the watch ended (stream closed or watch cancelled) and was opened again. */
  private ended = 0;

  constructor(
    private readonly address: string,
    private readonly prefix: Buffer,
    private readonly key: string,
  ) {
    this.open();
    // WatchClient reports a stream's end by state: look every 200 ms.
    this.endCheck = setInterval(() => {
      if (this.client?.ended !== null && this.client?.ended !== undefined) this.reopenLater();
    }, 200);
  }

  /** Resolves once the server has confirmed the watch (from then on, every write reaches it). */
  async created(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.watching && performance.now() < deadline) await this.nextResponse(deadline - performance.now());
    return this.watching;
  }

  /** Times the watch ended and was opened again so far: 0 for one that stayed open. */
  get reopens(): number {
    return this.ended;
  }

  /** performance.now() when `value` of the watched key first arrived, or undefined. */
  arrival(value: string): number | undefined {
    return this.seen.get(value);
  }

  /** Resolves with the arrival time of `value`, or Infinity after `timeoutMs`. */
  async whenSeen(value: string, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const at = this.seen.get(value);
      if (at !== undefined) return at;
      const left = deadline - performance.now();
      if (left <= 0) return Number.POSITIVE_INFINITY;
      await this.nextResponse(left);
    }
  }

  private nextResponse(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, timeoutMs));
      this.waiters.add(wake);
    });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.endCheck);
    if (this.reopenTimer !== null) clearTimeout(this.reopenTimer);
    this.client?.close();
  }

  private open(): void {
    const client = new WatchClient(this.address, {
      keep: false,
      ownConnection: true,
      onResponse: (response, at) => {
        if (this.client !== client) return;
        if (response.created === true) this.watching = true;
        if (response.canceled === true) {
          this.reopenLater();
          return;
        }
        for (const event of response.events ?? []) {
          const kv = event.kv;
          if (kv === undefined || kv === null) continue;
          this.lastRevision = Math.max(this.lastRevision, Number(kv.mod_revision ?? 0));
          if (kv.key?.toString() === this.key) {
            const value = kv.value?.toString() ?? '';
            if (!this.seen.has(value)) this.seen.set(value, at);
          }
        }
        for (const wake of [...this.waiters]) wake();
      },
    });
    this.client = client;
    client.create({ key: this.prefix, range_end: prefixEnd(this.prefix), ...(this.lastRevision > 0 ? { start_revision: this.lastRevision + 1 } : {}) });
  }

  private reopenLater(): void {
    if (this.closed || this.reopenTimer !== null) return;
    this.ended += 1;
    this.client?.close();
    this.client = null;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (!this.closed) this.open();
    }, REOPEN_AFTER_MS);
  }
}

function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  return end;
}
