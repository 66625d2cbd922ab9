import type { EncodedEvent } from '../etcd/event-bytes';
import type { HeaderIdentity } from '../etcd/records';
import { hasWork, writeEvents } from './event-commit';
import type { PersistedMeta } from './meta';
import type { StoreState } from './store-state';
import { snapshotMeta } from './stored-meta';
import type { WriteGuard } from './write-hold';

/** Any period: the timer only holds the event loop while a commit is in flight. */
const KEEP_ALIVE_MS = 60_000;

/**
 * The mirror's event commits, made by lmdb-js's writer thread, one at a
 * time. A commit's disk sync (`fdatasync`, 0.3 ms and far more while etcd
 * syncs its own log on the same disk) then no longer stops the proxy's one
 * thread: it serves and takes the next watch responses meanwhile, and the
 * next commit carries all of them.
 *
 * While a commit is in flight:
 * - the writes that can wait (the member list, the auth state, the meta's
 *   own updates) are kept, the latest of each kind, and made once it ends;
 * - any other write is a mistake of the caller, refused (they run when the
 *   mirror's watch is not running, or between its commits);
 * - reads take the meta from their read snapshot, since lmdb-js shows the
 *   commit to reads as soon as it is made, before the promise of it settles.
 * A process crash loses nothing the promise reported; an OS crash may lose
 * the last commits (store-tables.ts), which etcd still holds.
 */
export class BackgroundCommits {
  private inFlight: Promise<number> | null = null;
  /** Writes that can wait, by kind: only the latest of each matters, so this holds a few at most. */
  private readonly deferred = new Map<string, () => void>();
  private idleWaiters: (() => void)[] = [];
  /** The meta reads get while busy, read once per synchronous stretch (reads ask for it many times). */
  private readerMeta: PersistedMeta | null = null;

  constructor(
    private readonly state: StoreState,
    private readonly guard: WriteGuard,
  ) {}

  get busy(): boolean {
    return this.inFlight !== null;
  }

  /**
   * Commits the events (as MirrorStore.applyEvents does) in lmdb-js's writer
   * thread; resolves with the new M once the commit is made and on disk.
   * Nothing is written when it rejects.
   */
  commit(events: readonly EncodedEvent[], identity: HeaderIdentity, through: number, needBytes: number): Promise<number> {
    const { state, guard } = this;
    if (this.inFlight !== null) return Promise.reject(new Error('etcd-cache-proxy: mirror store: a commit is already in flight'));
    if (!hasWork(state.meta, events, through, [])) return Promise.resolve(state.meta.revision);
    let base: PersistedMeta | null = null;
    let written: PersistedMeta | null = null;
    const committed = guard
      .runInBackground(
        (claim) =>
          // A child transaction: a callback that throws midway leaves nothing of its writes in the commit.
          state.tables.root.childTransaction(() => {
            claim();
            base = state.meta;
            written = writeEvents(state.tables, base, events, identity, through, []);
          }),
        needBytes,
      )
      .then(() => {
        if (written === null || base === null) throw new Error('etcd-cache-proxy: mirror store: the commit ran no transaction');
        state.meta = merged(written, base, state.meta);
        return state.meta.revision;
      });
    this.inFlight = committed;
    // lmdb-js tells of the commit through a call that does not keep the process running: this does, meanwhile.
    const keepAlive = setInterval(() => undefined, KEEP_ALIVE_MS);
    const settle = (): void => {
      clearInterval(keepAlive);
      this.settled();
    };
    committed.then(settle, settle);
    return committed;
  }

  /** A write that can wait: made now (the guard may still keep it), or kept until the commit in flight ends. */
  runOrDefer(kind: string, write: () => void): void {
    if (this.inFlight === null) this.guard.runOrDefer(kind, write);
    else this.deferred.set(kind, write);
  }

  /** Throws when a commit is in flight: `what` must wait for idle(). */
  assertIdle(what: string): void {
    if (this.inFlight !== null) throw new Error(`etcd-cache-proxy: mirror store: ${what} while a commit is in flight`);
  }

  /** Resolves once no commit is in flight; the caller's next synchronous stretch may then write. */
  async idle(): Promise<void> {
    while (this.inFlight !== null) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** The meta for reads: the writer's own, or while busy the read snapshot's, which may already hold the commit in flight. */
  readMeta(): PersistedMeta {
    if (this.inFlight === null) return this.state.meta;
    if (this.readerMeta === null) {
      const seen = snapshotMeta(this.state.tables);
      // What the writer learnt meanwhile and keeps to write later (a compaction) counts at once, as it does when idle.
      this.readerMeta = seen.compactRevision >= this.state.meta.compactRevision ? seen : { ...seen, compactRevision: this.state.meta.compactRevision };
      queueMicrotask(() => (this.readerMeta = null));
    }
    return this.readerMeta;
  }

  private settled(): void {
    this.inFlight = null;
    this.readerMeta = null;
    const kept = [...this.deferred.entries()];
    this.deferred.clear();
    for (const [kind, write] of kept) {
      try {
        this.guard.runOrDefer(kind, write);
      } catch {
        // Not for lack of room (the guard keeps those): what it would have saved, etcd will say again.
      }
    }
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * The writer's meta after a commit: what it wrote, with what the writer
 * learnt while it was in flight (a compaction point, a newer identity),
 * which the kept meta write then records.
 */
function merged(written: PersistedMeta, base: PersistedMeta, now: PersistedMeta): PersistedMeta {
  return {
    ...written,
    compactRevision: Math.max(written.compactRevision, now.compactRevision),
    identity: now.identity !== base.identity ? now.identity : written.identity,
  };
}
