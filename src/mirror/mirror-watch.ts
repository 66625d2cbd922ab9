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
 * those that arrive in one turn of the event loop go in one LMDB
 * transaction, at the end of the turn. A commit costs a disk sync (some
 * 300-600 us here, lmdb-js's synchronous commit waits for it), so one per
 * watch response capped writes through the proxy near 1 500/s; under load
 * a turn brings several, and each then costs a fraction of one. Readers,
 * the hub and waiting writes see them when that transaction is committed,
 * each delivery told in order, as before.
 */
export class MirrorWatch {
  /** The stream open now; null between watches. */
  private stream: WatchStream | null = null;
  /** Deliveries of this turn, committed together at its end (or when the stream ends). */
  private pending: WatchDelivery[] = [];
  private flushScheduled = false;
  /** The member it runs on; null between watches. */
  private member: UpstreamMember | null = null;

  constructor(private readonly deps: MirrorWatchDeps) {}

  /** Watches `member` from `startRevision` until the stream ends: resolves when stopped, else rejects with why. */
  async run(member: UpstreamMember, startRevision: number, trust: ProgressTrust): Promise<void> {
    const { identity, scope } = this.deps;
    const ranges = scope.current;
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
      this.flush();
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

  /** Takes one delivery of the watch, to be committed with the rest of this turn's. */
  private commit(delivery: WatchDelivery): void {
    // What grayscale shows of an event depends on what the store holds before it: committed one by one.
    const grayscale = this.deps.grayscale;
    if (grayscale?.enabled === true) {
      this.flush();
      this.commitOne(delivery, grayscale);
      return;
    }
    this.pending.push(delivery);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const stream = this.stream;
    setImmediate(() => {
      try {
        this.flush();
      } catch (error) {
        // As a commit that failed inside the delivery: the stream is given up, and resumes from what was committed.
        stream?.finish(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Commits every pending delivery in one LMDB transaction, then tells of each in order; on failure none is told, and none is kept. */
  private flush(): void {
    this.flushScheduled = false;
    const deliveries = this.pending;
    if (deliveries.length === 0) return;
    this.pending = [];
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
    store.applyEvents(
      told.flatMap((delivery) => delivery.events),
      last.header,
      through,
      [],
    );
    for (const delivery of told) this.deps.onCommitted(delivery.revision, delivery.events);
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
