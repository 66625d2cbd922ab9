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
 * The mirror following one member: its upstream watch from M+1, each
 * delivery committed as one LMDB transaction before anyone is told, ended
 * when the member stops answering, the scope asks for a list, or the mirror
 * stops it.
 */
export class MirrorWatch {
  /** The stream open now; null between watches. */
  private stream: WatchStream | null = null;
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

  /** Commits one delivery of the watch: one LMDB transaction, before anyone is told. */
  private commit({ events: received, through, header }: WatchDelivery): void {
    const { store, grayscale } = this.deps;
    // A resumed watch may repeat the seam: events the store holds already are not seen again.
    const fresh = received.filter((event) => event.kv.mod_revision > store.meta().revision);
    const view = grayscale === null ? { events: fresh, withheld: [] } : grayscale.viewEvents(fresh, (key) => store.get(key));
    const revision = store.applyEvents(view.events, header, through, view.withheld);
    if (view.withheld.length > 0) this.deps.onWithheld?.();
    this.deps.onCommitted(revision, view.events);
  }
}
