import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import type { EncodedEvent } from '../etcd/event-bytes';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamMember } from '../upstream/pool';
import type { AuthGate } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { GrayscaleView } from '../grayscale/view';
import type { MirrorScope } from './mirror-scope';
import type { ProgressTrust } from './range-watermark';
import type { ScopeRefresh } from './scope-refresh';
import { MemberFailed, openWatchStream, type WatchDelivery, type WatchStream } from './watch-stream';

export interface MirrorWatchDeps {
  readonly store: MirrorStore;
  readonly scope: MirrorScope;
  readonly identity: UpstreamLogin;
  readonly liveness: Liveness;
  readonly auth: AuthGate;
  readonly scopeRefresh: ScopeRefresh;
  readonly log: Logger;
  readonly grayscale: GrayscaleView | null;
  /** Called after every commit that may change what is withheld (metrics). */
  readonly onWithheld?: () => void;
  /** Called with +1 when the watch stream opens, -1 when it ends (metrics). */
  readonly onWatchStream?: (delta: number) => void;
  /** One delivery is committed: M is `revision`, and `events` are what changed (maybe none). */
  readonly onCommitted: (revision: number, events: readonly EncodedEvent[]) => void;
}

/**
 * The mirror following one member: its upstream watch from M+1, ended when
 * the member stops answering, the scope asks for a list, or the mirror stops
 * it. Deliveries are committed before anyone is told of them, together:
 * those that arrive while nothing is being committed go in one LMDB
 * transaction at the end of their turn of the event loop, and those that
 * arrive while a commit is in flight go in the next one, started as soon as
 * it ends. The commits are made by lmdb-js's writer thread
 * (store/background-commits.ts): a commit costs a disk sync (300-600 us
 * here, far more while etcd syncs on the same disk), which stopped the
 * proxy's one thread while it was made on it. Readers, the hub and waiting
 * writes see the deliveries when their commit is made, each told in order.
 */
export class MirrorWatch {
  /** The stream open now; null between watches. */
  private stream: WatchStream | null = null;
  /** Deliveries not committed yet, committed together by the next commit. */
  private pending: WatchDelivery[] = [];
  private flushScheduled = false;
  /** The commit in flight; null when none. */
  private committing: Promise<void> | null = null;
  /** Jobs that change the store themselves, run once the commit in flight ends (before the next starts). */
  private betweenCommits: (() => void)[] = [];
  /** Why the last commit failed, for run() to reject with once its stream has ended. */
  private commitFailure: Error | null = null;
  /** The member it runs on; null between watches. */
  private member: UpstreamMember | null = null;

  constructor(private readonly deps: MirrorWatchDeps) {}

  /** Watches `member` from `startRevision` until the stream ends: resolves when stopped, else rejects with why. */
  async run(member: UpstreamMember, startRevision: number, trust: ProgressTrust): Promise<void> {
    const { identity, scope } = this.deps;
    const ranges = scope.current;
    this.commitFailure = null;
    const opened = openWatchStream({
      member,
      ranges,
      // One watch over the gaps between ranges needs the right to read them; the mirror's user may lack it.
      separate: identity.hasTokenAt(member) && ranges.ranges.length > 1,
      trust,
      startRevision,
      identity,
      liveness: this.deps.liveness,
      log: this.deps.log,
      deliver: (delivery) => this.commit(delivery),
      onCreated: () => this.deps.auth.accepted(),
      onStream: (delta) => this.deps.onWatchStream?.(delta),
    });
    this.stream = opened;
    this.member = member;
    const stopRefresh = this.deps.scopeRefresh.whileWatching(member, (error) => opened.finish(error));
    try {
      await opened.done;
    } finally {
      stopRefresh();
      this.stream = null;
      this.member = null;
      // What this stream delivered is committed before anything else writes the store (a list, a wipe).
      await this.drain();
    }
  }

  /**
   * `failed` stopped answering (its probes said so): a paused or partitioned
   * member keeps the stream open and silent, so the watch leaves it now.
   */
  leave(failed: UpstreamMember): void {
    if (this.stream !== null && failed === this.member) this.stream.finish(new MemberFailed(failed.endpoint.url));
  }

  /** Ends the watch quietly, if one runs. */
  stop(): void {
    this.stream?.finish(null);
  }

  /**
   * Runs `job`, which writes the store itself, between two commits: now when
   * none is in flight (what it throws goes to the caller), else once the one
   * in flight ends (what it throws is logged).
   */
  whenNotCommitting(job: () => void): void {
    if (this.committing === null) job();
    else this.betweenCommits.push(job);
  }

  /** Takes one delivery of the watch, to be committed with the others that are not yet. */
  private commit(delivery: WatchDelivery): void {
    // What grayscale shows of an event depends on what the store holds before it: committed one by one, at once.
    const grayscale = this.deps.grayscale;
    if (grayscale?.enabled === true && this.committing === null && this.pending.length === 0) {
      this.commitOne(delivery, grayscale);
      return;
    }
    this.pending.push(delivery);
    if (this.flushScheduled || this.committing !== null) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Commits whatever is pending and nothing else is being committed; waits for every commit, this stream's last included. */
  private async drain(): Promise<void> {
    for (;;) {
      if (this.committing !== null) await this.committing;
      else if (this.pending.length > 0) this.flush();
      else break;
    }
    if (this.commitFailure !== null) throw this.commitFailure;
  }

  /**
   * Starts committing every pending delivery in one LMDB transaction, then
   * tells of each in order; on failure none is told, none is kept, and the
   * stream is given up (it resumes from what was committed).
   */
  private flush(): void {
    const deliveries = this.pending;
    if (deliveries.length === 0 || this.committing !== null) return;
    this.pending = [];
    const stream = this.stream;
    const grayscale = this.deps.grayscale;
    if (grayscale?.enabled === true) {
      try {
        for (const delivery of deliveries) this.commitOne(delivery, grayscale);
      } catch (error) {
        this.failed(stream, error);
      }
      return;
    }
    const { store } = this.deps;
    // A resumed watch may repeat the seam: events the store holds already (or an earlier delivery brings) are not seen again.
    let revision = store.meta().revision;
    const told = deliveries.map(({ events, through }) => {
      const fresh = events.filter((event) => event.kv.mod_revision > revision);
      revision = fresh.reduce((highest, event) => Math.max(highest, event.kv.mod_revision), Math.max(revision, through));
      return { revision, events: fresh };
    });
    const last = deliveries[deliveries.length - 1] as WatchDelivery;
    const through = deliveries.reduce((highest, delivery) => Math.max(highest, delivery.through), 0);
    this.committing = store
      .applyEventsInBackground(
        told.flatMap((delivery) => delivery.events),
        last.header,
        through,
      )
      .then(
        () => {
          try {
            for (const delivery of told) this.deps.onCommitted(delivery.revision, delivery.events);
          } catch (error) {
            this.failed(stream, error);
          }
        },
        (error: unknown) => this.failed(stream, error),
      )
      .finally(() => {
        this.committing = null;
        this.runBetweenCommits();
        try {
          this.flush();
        } catch (error) {
          this.failed(this.stream, error);
        }
      });
  }

  /** A commit failed: what is pending follows a gap now, so it goes too, and the stream is given up. */
  private failed(stream: WatchStream | null, error: unknown): void {
    const failure = error instanceof Error ? error : new Error(String(error));
    this.pending = [];
    this.commitFailure = failure;
    stream?.finish(failure);
  }

  private runBetweenCommits(): void {
    const jobs = this.betweenCommits;
    this.betweenCommits = [];
    for (const job of jobs) {
      try {
        job();
      } catch (error) {
        this.deps.log.error({ err: error }, 'mirror: a change of the store made between two commits failed');
      }
    }
  }

  /** Commits one delivery: one LMDB transaction, before anyone is told. */
  private commitOne({ events: received, through, header }: WatchDelivery, grayscale: GrayscaleView): void {
    const { store } = this.deps;
    const fresh = received.filter((event) => event.kv.mod_revision > store.meta().revision);
    const view = grayscale.viewEvents(fresh, (key) => store.get(key));
    const revision = store.applyEvents(view.events, header, through, view.withheld);
    if (view.withheld.length > 0) this.deps.onWithheld?.();
    this.deps.onCommitted(revision, view.events);
  }
}
