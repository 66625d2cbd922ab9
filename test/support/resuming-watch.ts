import { status } from '@grpc/grpc-js';
import { WatchClient, type WatchCreate, type WireEvent, type WireWatchResponse } from './watch-client';

// One watch kept open the way etcd's own Go client (clientv3) keeps it: when
// its stream fails with Unavailable or Internal (the member went away), it
// opens a new stream and creates the watch again from the revision after the
// last event it received; any other end, or a cancel from the server, ends it.
// What it hands its user is what clientv3's watch channel would carry: the
// events once, and the cancel (compacted or not) as the last answer. Tests use
// it to watch etcd directly beside a plain stream through the proxy.

const RETRY_MS = 100;

export class ResumingWatch {
  /** Every answer after the first created one, in order (created answers of the resumed creates are not shown). */
  readonly answers: WireWatchResponse[] = [];
  private client: WatchClient | null = null;
  private next: number;
  private created = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly address: string,
    private readonly create: WatchCreate,
  ) {
    this.next = create.start_revision ?? 0;
    this.open();
  }

  get events(): WireEvent[] {
    return this.answers.flatMap((a) => a.events ?? []);
  }

  /** The server's cancel, if the watch ended so (a compaction, say). */
  get cancelled(): WireWatchResponse | undefined {
    return this.answers.find((a) => a.canceled === true);
  }

  /** Resolves once `check` holds; rejects after the timeout. */
  until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} on a resuming watch to ${this.address}; got ${JSON.stringify(this.answers)}`));
      }, timeoutMs);
      const waiter = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve();
      };
      this.waiters.add(waiter);
    });
  }

  close(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.client?.close();
  }

  private open(): void {
    if (this.stopped) return;
    const client = new WatchClient(this.address, {
      keep: false,
      onResponse: (response) => this.received(response),
    });
    this.client = client;
    client.create({ ...this.create, start_revision: this.next });
    // Polled rather than awaited: a wait on WatchClient.end() would outlive a close.
    const poll = setInterval(() => {
      const end = client.ended;
      if (this.stopped || this.client !== client) {
        clearInterval(poll);
        return;
      }
      if (end === null) return;
      clearInterval(poll);
      client.close();
      if (end.code !== status.UNAVAILABLE && end.code !== status.INTERNAL) {
        this.stopped = true;
        return;
      }
      this.timer = setTimeout(() => this.open(), RETRY_MS);
    }, RETRY_MS);
  }

  private received(response: WireWatchResponse): void {
    if (this.stopped) return;
    if (response.created === true && response.canceled !== true) {
      // A watch from now resumes after the revision its first created answer named.
      if (!this.created && this.next === 0) this.next = Number(response.header?.revision ?? '0') + 1;
      if (this.created) return;
      this.created = true;
    }
    const events = response.events ?? [];
    const last = events[events.length - 1];
    if (last !== undefined && response.fragment !== true) this.next = Number(last.kv?.mod_revision ?? '0') + 1;
    this.answers.push(response);
    if (response.canceled === true) this.close();
    for (const waiter of [...this.waiters]) waiter();
  }
}
