import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import { isOutOfSpace } from '../store/write-hold';
import type { UpstreamMember, UpstreamPool } from '../upstream/pool';
import type { AuthGate } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { MirrorWatch } from './mirror-watch';
import type { ProgressTrust } from './range-watermark';
import type { Relister } from './relist';
import type { ScopeRefresh } from './scope-refresh';
import type { SnapshotAdoption } from './snapshot-adoption';
import type { SyncBackoff } from './sync-backoff';
import { checkUpstream, type ClusterRevisionProbe } from './upstream-check';
import { MemberFailed, progressTrustFor } from './watch-stream';

export interface SyncLoopParts {
  readonly store: MirrorStore;
  readonly pool: UpstreamPool;
  readonly identity: UpstreamLogin;
  readonly auth: AuthGate;
  readonly log: Logger;
  readonly scopeRefresh: ScopeRefresh;
  readonly relister: Relister;
  readonly watch: MirrorWatch;
  readonly backoff: SyncBackoff;
  readonly adoption: SnapshotAdoption;
  /** How long the member's Status may take. */
  readonly statusTimeoutMs: number;
  /** How the cluster's own revision is read when a member's Status says it is behind the mirror. */
  readonly clusterRevision: ClusterRevisionProbe;
  /** The store was wiped (another cluster, or one restored from a backup); M was `previous`. */
  readonly onDiscarded: (previous: number) => void;
  /** Called when the watch resumes on another member than the one it ran on (metrics). */
  readonly onFailover?: () => void;
}

/**
 * The mirror's loop: on the first candidate member, check it is the same
 * cluster and what the mirror's user may read, list when the store is empty
 * or a list is due, then watch from M+1 until the watch ends; after a
 * failure, list again if that is what it asks for, move on at once from a
 * member that stopped answering, else wait out a backoff and start over.
 */
export class SyncLoop {
  private closed = false;
  /** The member the last watch ran on: resuming on another is a failover. */
  private watchedMember: UpstreamMember | null = null;
  /** How far the member's answers to progress requests can be believed (its version, from Status). */
  private trust: ProgressTrust = progressTrustFor(undefined);
  /** Settles when the loop has ended (after close()). */
  readonly done: Promise<void>;
  /** Ends a wait for the store to write again. */
  private wakeFromHold: () => void = () => undefined;

  constructor(private readonly parts: SyncLoopParts) {
    this.done = this.run();
  }

  /** True while the loop waits to try etcd again (and is not closing): content may be adopted then. */
  get idle(): boolean {
    return !this.closed && this.parts.backoff.waiting;
  }

  /** Ends the loop: a wait or a watch in progress ends now; `done` settles once the attempt in flight has. */
  close(): void {
    this.closed = true;
    this.parts.backoff.wake();
    this.parts.watch.stop();
    this.wakeFromHold();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      const adopting = this.parts.adoption.underWay;
      if (adopting !== null) await adopting;
      // A store that cannot write for lack of room is not fed: the watch resumes from M+1 once it can.
      if (this.parts.store.writeHold() !== null) {
        await this.untilWritable();
        continue;
      }
      const member = this.parts.pool.candidates()[0];
      try {
        await this.attempt(member);
      } catch (error) {
        if (this.closed) return;
        await this.recover(member, error);
      }
    }
  }

  /** One sync from `member`: its checks, a list if due, then the watch until it ends. */
  private async attempt(member: UpstreamMember | undefined): Promise<void> {
    const { store, identity, relister } = this.parts;
    if (member === undefined) throw new Error('no upstream member');
    await identity.readyAt(member);
    await this.checkUpstream(member);
    await this.parts.scopeRefresh.check(member);
    if (store.meta().revision === 0) await relister.list(member, 0);
    const reason = relister.pending;
    if (reason !== null) throw new Error(reason);
    this.parts.backoff.succeeded();
    // close() may have come while the identity check or the list was in flight,
    // when there was no stream yet for it to cancel.
    if (this.closed) return;
    if (this.watchedMember !== null && this.watchedMember !== member) this.parts.onFailover?.();
    this.watchedMember = member;
    await this.parts.watch.run(member, store.meta().revision + 1, this.trust);
  }

  private async checkUpstream(member: UpstreamMember): Promise<void> {
    const check = await checkUpstream(this.parts.store, member, this.parts.log, this.parts.statusTimeoutMs, this.parts.clusterRevision);
    this.trust = check.trust;
    if (check.discarded !== null) this.parts.onDiscarded(check.discarded);
  }

  /** Waits until the store writes again, or the loop closes. */
  private async untilWritable(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wakeFromHold = resolve;
      void this.parts.store.whenWritable().then(resolve);
    });
    this.wakeFromHold = () => undefined;
  }

  /** After a failed attempt: a list when due, a new member at once, a wait for room on the disk, or a backoff. */
  private async recover(member: UpstreamMember | undefined, failure: unknown): Promise<void> {
    const { identity, auth, relister, log } = this.parts;
    let error = failure;
    // A stale token of the mirror's own means a new login, not that its user may not read.
    const staleToken = member !== undefined && identity.observe(member, error);
    if (!staleToken) auth.observe(error);
    try {
      if (await relister.recover(member, error)) return;
    } catch (listError) {
      error = listError;
    }
    if (error instanceof MemberFailed) {
      log.warn({ member: error.member }, 'mirror watch leaves a member that stopped answering');
      return;
    }
    // No room for the store: the hold was logged once where it began; the loop waits for room at its top.
    if (isOutOfSpace(error)) return;
    await this.parts.backoff.after(error);
  }
}
