import { cancelReasonOf } from '../etcd/errors';
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
 * A create etcd has not answered in this long has the token it carries
 * looked at (and again as often while it waits): etcd answers a create at
 * once, except one whose simple token names a raft index past its log
 * (restored from a backup), which it holds for as long as the stream lasts.
 */
const CREATE_ANSWER_CHECK_MS = 5_000;
/** What etcd answers, once its log reaches the token's index, a create with a token it does not know. */
const TOKEN_REFUSAL: WireWatchResponse = { watch_id: '-1', created: true, canceled: true, cancel_reason: cancelReasonOf('invalidAuthToken') };

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
  /** Looks at the token of an unanswered create when it is due. */
  private createCheck: NodeJS.Timeout | null = null;
  private awaitingCreated = false;

  constructor(
    private readonly watch: SharedWatch,
    private readonly request: WireWatchCreateRequest,
    /** The stream for the next create (null: no member to ask). */
    private readonly stream: () => WatchCreator | null,
    /** Whether the token the watch is created with is of a raft log etcd no longer has; null: it carries none. */
    private readonly tokenOfAnotherLog: (() => Promise<boolean>) | null = null,
  ) {}

  /** Creates the watch upstream for the first time; false if there is no member to ask. */
  open(): boolean {
    return this.create();
  }

  received(response: WireWatchResponse): void {
    if (response.created === true) {
      this.failures = 0;
      this.stopAwaitingCreated();
    }
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
    this.stopAwaitingCreated();
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
    this.stopAwaitingCreated();
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
    if (this.tokenOfAnotherLog !== null) {
      this.awaitingCreated = true;
      this.checkTokenLater();
    }
    return true;
  }

  private checkTokenLater(): void {
    this.createCheck = setTimeout(() => {
      this.createCheck = null;
      void this.checkToken();
    }, CREATE_ANSWER_CHECK_MS);
    this.createCheck.unref();
  }

  /** A create still unanswered: refused as etcd will refuse it when its token is past every member's log, else looked at again later. */
  private async checkToken(): Promise<void> {
    const on = this.on;
    const over = (await this.tokenOfAnotherLog?.().catch(() => false)) === true;
    if (this.closed || !this.awaitingCreated || this.on !== on || !this.watch.open()) return;
    if (!over) {
      this.checkTokenLater();
      return;
    }
    this.stopAwaitingCreated();
    this.cancelUpstream?.();
    this.cancelUpstream = null;
    this.on = null;
    // Members already answered (a resumed watch) take it as etcd's cancel; the others as its refusal.
    this.watch.received(TOKEN_REFUSAL);
  }

  private stopAwaitingCreated(): void {
    this.awaitingCreated = false;
    if (this.createCheck !== null) clearTimeout(this.createCheck);
    this.createCheck = null;
  }
}
