import type { WireWatchResponse } from '../etcd/wire';
import { fullJitterDelayMs } from '../mirror/reconnect-delay';
import type { RelayStream, UpstreamWatchListener } from './relay-stream';
import type { SharedWatch } from './shared-watch';
import type { WireWatchCreateRequest } from './watch-spec';

/** Where an upstream watch is created: a relay stream (which may be asked for progress). */
export type WatchCreator = Pick<RelayStream, 'create'> & Partial<Pick<RelayStream, 'askProgress'>>;

/** etcd's client watches again at once, then backs off; a dead member is tried about once a second at most. */
const RESUME_BASE_MS = 50;
const RESUME_CAP_MS = 1_000;

/**
 * Keeps one shared watch open upstream, as etcd's own client keeps a watch
 * open: when the stream under it fails (the connection dropped, the member
 * went away), it creates the watch again on whichever stream the relay hands
 * out next (the same member or another), from the first revision its members
 * were not sent in full, so they see no gap and no repeat. A compaction past
 * that revision meanwhile reaches them as etcd's own compacted cancel.
 */
export class RelayLink implements UpstreamWatchListener {
  private cancelUpstream: (() => void) | null = null;
  /** The stream its upstream watch is on now (null: none, waiting to be created again). */
  private on: WatchCreator | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly watch: SharedWatch,
    private readonly request: WireWatchCreateRequest,
    /** The stream for the next create (null: no member to ask). */
    private readonly stream: () => WatchCreator | null,
  ) {}

  /** Creates the watch upstream for the first time; false if there is no member to ask. */
  open(): boolean {
    return this.create();
  }

  received(response: WireWatchResponse): void {
    if (response.created === true) this.failures = 0;
    this.watch.received(response);
  }

  caughtUp(revision: number, askedAt: number): void {
    this.watch.caughtUp(revision, askedAt);
  }

  /** A client waits for progress on this watch: its stream asks etcd (nothing to ask while it has none). */
  askProgress(): void {
    this.on?.askProgress?.();
  }

  broken(reason: string, resumable: boolean): void {
    this.cancelUpstream = null;
    this.on = null;
    if (this.closed || !this.watch.open()) return;
    this.watch.upstreamLost();
    if (!resumable) {
      this.watch.fail(reason);
      return;
    }
    const delay = fullJitterDelayMs(this.failures, RESUME_BASE_MS, RESUME_CAP_MS);
    this.failures += 1;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closed || !this.watch.open()) return;
      // No member at all right now: wait and try again, as after a failed stream.
      if (!this.create()) this.broken(reason, true);
    }, delay);
    // Its members' streams keep the process alive, not this wait.
    this.timer.unref();
  }

  /** Every member left: the upstream watch (or the wait to create it again) ends. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.cancelUpstream?.();
    this.cancelUpstream = null;
    this.on = null;
  }

  private create(): boolean {
    const stream = this.stream();
    if (stream === null) return false;
    const revision = this.watch.resumeRevision();
    this.cancelUpstream = stream.create(this, { ...this.request, start_revision: String(revision) });
    this.on = stream;
    return true;
  }
}
