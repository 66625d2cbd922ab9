import type { EtcdRevision, RecordedEvent, WatchDelivery } from './history';
import type { ClientLogin } from './client-login';
import { followWatchChain } from './watch-chain';

/**
 * etcd's own history, the checker's ground truth: one watch of the whole
 * keyspace from revision 1, made straight on the members (the next member
 * when one fails, from the last revision + 1). Compactions in a run stay
 * below what it has received, so it is never compacted itself.
 */
export class EtcdRecorder {
  private readonly byRevision = new Map<number, RecordedEvent[]>();
  /** When each revision's events first came. */
  private readonly seenAt = new Map<number, number>();
  private newest: number;
  private stopping = false;
  private turn = 0;
  private readonly stoppedSignal: Promise<void>;
  private stop: () => void = () => undefined;
  private readonly done: Promise<void>;
  /** Why the recorder's watch ended, if it did before the run (a compaction past it: the run is void). */
  failure: string | null = null;

  constructor(
    private readonly addresses: () => readonly string[],
    private readonly login: ClientLogin | null = null,
    /** Where the watch starts: 1, or past the revision a restored etcd came back at (its history before is the previous epoch's). */
    private readonly startRevision = 1,
  ) {
    this.newest = Math.max(1, startRevision - 1);
    this.stoppedSignal = new Promise((resolve) => (this.stop = resolve));
    this.done = this.follow();
  }

  /** The newest revision whose events it has. */
  get revision(): number {
    return this.newest;
  }

  private async follow(): Promise<void> {
    const end = await followWatchChain(
      {
        address: () => {
          const list = this.addresses();
          this.turn += 1;
          return list[this.turn % list.length] ?? '';
        },
        client: 'recorder',
        chain: 'recorder',
        via: 'etcd',
        key: '\0',
        rangeEnd: '\0',
        startRevision: this.startRevision,
        progressNotify: true,
        login: this.login,
        onDelivery: (delivery) => this.take(delivery),
        record: () => undefined,
        nextId: () => 0,
        running: () => !this.stopping,
      },
      this.stoppedSignal,
    );
    if (end.reason !== 'closed') this.failure = `etcd's history watch ended: ${end.reason} ${end.compactRevision ?? ''} ${end.message ?? ''}`;
  }

  private take(delivery: WatchDelivery): void {
    for (const event of delivery.events) {
      if (!this.seenAt.has(event.kv.modRevision)) this.seenAt.set(event.kv.modRevision, delivery.at);
      const list = this.byRevision.get(event.kv.modRevision) ?? [];
      list.push(event);
      this.byRevision.set(event.kv.modRevision, list);
      this.newest = Math.max(this.newest, event.kv.modRevision);
    }
  }

  /** Waits until it has every revision up to `revision` (etcd's newest, read after the traffic stopped). */
  async caughtUp(revision: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.newest < revision && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    return this.newest >= revision;
  }

  async close(): Promise<EtcdRevision[]> {
    this.stopping = true;
    this.stop();
    await this.done;
    return [...this.byRevision.entries()].sort((a, b) => a[0] - b[0]).map(([revision, events]) => ({ type: 'etcd', revision, events, at: this.seenAt.get(revision) ?? 0 }));
  }
}
