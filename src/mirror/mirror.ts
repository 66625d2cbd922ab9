import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import type { EncodedEvent } from '../etcd/event-bytes';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamMember, UpstreamPool } from '../upstream/pool';
import { AuthRefused, type AuthGate } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import { fullJitterDelayMs } from './reconnect-delay';
import { listInto } from './lister';
import { KeyRanges } from '../etcd/key-ranges';
import { RevisionWaiters } from './revision-waiters';
import type { GrayscaleView } from '../grayscale/view';
import { followUserScope, type MirrorScope } from './mirror-scope';
import { checkUpstream } from './upstream-check';
import { MemberFailed, openWatchStream, progressTrustFor, RelistNeeded, type WatchDelivery, type WatchStream } from './watch-stream';
import type { ProgressTrust } from './range-watermark';

const STATUS_TIMEOUT_MS = 3_000;
const INITIAL_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;
/** When etcd answers again, each proxy resumes within this long, at a random moment. */
const BACK_JITTER_MS = 2_000;

export interface MirrorEvents {
  /** One upstream watch response, committed: the new mirror revision and its events. */
  applied: [revision: number, events: readonly EncodedEvent[]];
  /** The content was replaced by a fresh list at `revision` (after compaction or a new cluster); M was `previous`. */
  relisted: [revision: number, previous: number];
  /** The content was replaced from a published snapshot at `revision` while no member answered; M was `previous`. */
  adopted: [revision: number, previous: number];
  /** The content was thrown away: another cluster, or one restored from a backup; M was `previous`. */
  discarded: [previous: number];
  /**
   * This machine's view of some keys was derived again at `revision` (the
   * grayscale settings changed): the log starts after it, and watchers of
   * keys for which `touches` holds cannot be told what changed.
   */
  rederived: [revision: number, touches: (key: Buffer, rangeEnd: Buffer) => boolean];
}

export interface Mirror extends EventEmitter<MirrorEvents> {
  /** M: the highest revision whose events are all committed (0: never synced). */
  revision(): number;
  /** True once the mirror holds a complete copy at some revision. */
  hasData(): boolean;
  /**
   * True while the mirror may serve nobody: etcd has auth on and the mirror
   * has no user of its own (--user) that etcd lets read the mirrored keys.
   * Every request is then forwarded with the client's own token.
   */
  authRequired(): boolean;
  /** True while etcd has auth on: whatever the mirror serves needs a permission decision for the client (auth/). */
  authEnabled(): boolean;
  /** Resolves true once M >= revision, false after timeoutMs. */
  waitForRevision(revision: number, timeoutMs: number): Promise<boolean>;
  /**
   * A client waits for the mirror (read your writes): if it is waiting to
   * reconnect, it reconnects now rather than at its jittered moment.
   */
  hurry(): void;
  /**
   * Changes what this machine shows of some keys, in place (`change` writes
   * the store synchronously, between two commits of the watch), and tells
   * everyone that follows the mirror.
   */
  rederive(change: () => void, touches: (key: Buffer, rangeEnd: Buffer) => boolean): void;
  /** Lists the upstream keyspace again (after a failed consistency check), keeping the old content until done. */
  requestRelist(reason: string): void;
  /**
   * Replaces the mirror's content from elsewhere (a published snapshot) while
   * no member answers: `restore` runs while the mirror waits to try etcd
   * again, and the mirror's next attempt waits for it. Watchers behind the
   * new content are cancelled as after a list. Refused while the mirror is
   * talking to etcd: etcd's own data is better than any snapshot.
   */
  adopt<T extends { revision: number }>(restore: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface MirrorDeps {
  readonly store: MirrorStore;
  readonly pool: UpstreamPool;
  readonly liveness: Liveness;
  readonly log: Logger;
  /** What to mirror: the whole keyspace or some prefixes, narrowed to what the mirror's user may read. */
  readonly scope: MirrorScope;
  /** How often what the mirror's user may read is asked again while auth is on (--auth-refresh-interval). */
  readonly scopeRefreshMs?: number;
  /** Whether the upstream lets the mirror serve (auth off); the mirror's own calls feed it too. */
  readonly auth: AuthGate;
  /** Who the mirror's calls are made as when etcd has auth on (--user). */
  readonly identity: UpstreamLogin;
  /** Called with M after every commit (metrics). */
  readonly onRevision?: (revision: number) => void;
  /** Called with +1 when the mirror's upstream watch stream opens, -1 when it ends (metrics). */
  readonly onWatchStream?: (delta: number) => void;
  /** Called when the watch resumes on another member than the one it ran on (metrics). */
  readonly onFailover?: () => void;
  /** Called with each wait before the mirror tries etcd again, ms (metrics). */
  readonly onReconnectDelay?: (ms: number) => void;
  /** The fastest a list of the keyspace reads from etcd; 0: as fast as it answers. */
  readonly listBytesPerSecond?: number;
  /** This machine's view under the grayscale prefixes: what it stores and tells watchers (null: off). */
  readonly grayscale?: GrayscaleView | null;
  /** Called after every commit that may change what is withheld (metrics). */
  readonly onWithheld?: () => void;
}

/**
 * Keeps the store an exact copy of the upstream keyspace: list it at one
 * revision when the store is empty, then watch from M+1 with prev_kv; each
 * watch response is one LMDB transaction, committed before anyone is told.
 * Reconnects resume at M+1; a compaction past M means a fresh list; another
 * cluster, or one whose revision is behind M, means the store is wiped first.
 */
export function startMirror({ store, pool, liveness, log, scope, scopeRefreshMs = 60_000, auth, identity, onRevision, onWatchStream, onFailover, onReconnectDelay, listBytesPerSecond = 0, grayscale = null, onWithheld }: MirrorDeps): Mirror {
  adoptHeldScope(store, scope, identity.configured, log);
  const emitter = new EventEmitter<MirrorEvents>();
  const waiters = new RevisionWaiters(() => store.meta().revision);
  let closed = false;
  let stream: WatchStream | null = null;
  let leaveMember: ((member: UpstreamMember) => void) | null = null;
  /** The member the last watch ran on: resuming on another is a failover. */
  let watchedMember: UpstreamMember | null = null;
  let wakeUp: (() => void) | null = null;
  let relistReason: string | null = null;
  /** True while the loop waits out its delay before trying etcd again: the only time content may be adopted. */
  let waiting = false;
  /** Content being adopted (never rejects): the loop's next attempt waits for it. */
  let adoption: Promise<void> | null = null;
  /** How far the member's answers to progress requests can be believed (its version, from Status). */
  let trust: ProgressTrust = progressTrustFor(undefined);
  /** When what the mirror's user may read was last asked. */
  let scopeCheckedAt = 0;

  const advanced = (revision: number): void => {
    waiters.release(revision);
    onRevision?.(revision);
  };

  const checkIdentity = async (member: UpstreamMember): Promise<void> => {
    const check = await checkUpstream(store, member, log, STATUS_TIMEOUT_MS);
    trust = check.trust;
    if (check.discarded !== null) emitter.emit('discarded', check.discarded);
  };

  /**
   * With auth on and a user of its own, the mirror holds what that user may
   * read (of what is configured): asked at every (re)connect and every
   * `scopeRefreshMs`. A scope other than the one on disk means a list.
   */
  const checkScope = async (member: UpstreamMember): Promise<void> => {
    const changed = await followUserScope(scope, identity, member, log, STATUS_TIMEOUT_MS);
    scopeCheckedAt = Date.now();
    if (changed && store.meta().revision > 0) relistReason ??= "the mirrored ranges changed (what the mirror's user may read)";
  };

  const relist = async (member: UpstreamMember, compactRevision: number): Promise<void> => {
    const started = Date.now();
    const previous = store.meta().revision;
    const result = await listInto(store, member.client, scope.current, compactRevision, () => identity.metadataFor(member), listBytesPerSecond, grayscale);
    onWithheld?.();
    log.info({ revision: result.revision, keys: result.keys, ms: Date.now() - started }, 'mirror listed the upstream keyspace');
    // A list went through: the upstream lets the mirror read what it holds.
    auth.accepted();
    advanced(result.revision);
    emitter.emit('relisted', result.revision, previous);
  };

  /** Commits one delivery of the watch: one LMDB transaction, before anyone is told. */
  const deliver = ({ events: received, through, header }: WatchDelivery): void => {
    // A resumed watch may repeat the seam: events the store holds already are not seen again.
    const fresh = received.filter((event) => event.kv.mod_revision > store.meta().revision);
    const view = grayscale === null ? { events: fresh, withheld: [] } : grayscale.viewEvents(fresh, (key) => store.get(key));
    const events = view.events;
    const revision = store.applyEvents(events, header, through, view.withheld);
    if (view.withheld.length > 0) onWithheld?.();
    advanced(revision);
    if (events.length > 0) emitter.emit('applied', revision, events);
  };

  const watchFrom = async (member: UpstreamMember, startRevision: number): Promise<void> => {
    const ranges = scope.current;
    const opened = openWatchStream({
      member,
      ranges,
      // One watch over the gaps between ranges needs the right to read them; the mirror's user may lack it.
      separate: identity.hasTokenAt(member) && ranges.ranges.length > 1,
      trust,
      startRevision,
      identity,
      liveness,
      log,
      deliver,
      onCreated: () => auth.accepted(),
      onStream: (delta) => onWatchStream?.(delta),
    });
    stream = opened;
    // A paused or partitioned member keeps the stream open and silent: its probes tell first.
    leaveMember = (failed) => {
      if (failed === member) opened.finish(new MemberFailed(member.endpoint.url));
    };
    const refresh = setInterval(() => {
      if (Date.now() - scopeCheckedAt < scopeRefreshMs || !identity.hasTokenAt(member)) return;
      scopeCheckedAt = Date.now();
      checkScope(member).then(
        () => {
          if (relistReason !== null) opened.finish(new Error(relistReason));
        },
        (error: unknown) => {
          if (error instanceof AuthRefused) opened.finish(error);
        },
      );
    }, Math.min(scopeRefreshMs, 10_000));
    refresh.unref();
    try {
      await opened.done;
    } finally {
      clearInterval(refresh);
      stream = null;
      leaveMember = null;
    }
  };

  const run = async (): Promise<void> => {
    let failures = 0;
    let lastError = '';
    while (!closed) {
      if (adoption !== null) await adoption;
      const member = pool.candidates()[0];
      try {
        if (member === undefined) throw new Error('no upstream member');
        await identity.readyAt(member);
        await checkIdentity(member);
        await checkScope(member);
        if (store.meta().revision === 0) await relist(member, 0);
        if (relistReason !== null) throw new Error(relistReason);
        failures = 0;
        // close() may have come while the identity check or the list was in flight,
        // when there was no stream yet for it to cancel.
        if (closed) return;
        if (watchedMember !== null && watchedMember !== member) onFailover?.();
        watchedMember = member;
        await watchFrom(member, store.meta().revision + 1);
      } catch (error) {
        if (closed) return;
        // A stale token of the mirror's own means a new login, not that its user may not read.
        const staleToken = member !== undefined && identity.observe(member, error);
        if (!staleToken) auth.observe(error);
        const requested = relistReason;
        if ((error instanceof RelistNeeded || requested !== null) && member !== undefined) {
          const compactRevision = error instanceof RelistNeeded ? error.compactRevision : store.meta().compactRevision;
          log.warn({ compactRevision, mirrorRevision: store.meta().revision, reason: requested ?? 'upstream compacted past the mirror' }, 're-listing');
          relistReason = null;
          try {
            await relist(member, compactRevision);
            continue;
          } catch (listError) {
            error = listError;
          }
        }
        if (error instanceof MemberFailed) {
          log.warn({ member: error.member }, 'mirror watch leaves a member that stopped answering');
          continue;
        }
        const message = error instanceof Error ? error.message : String(error);
        const delay = fullJitterDelayMs(failures, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS);
        failures += 1;
        if (message !== lastError) log.warn({ err: message, retryInMs: delay }, 'mirror sync interrupted');
        lastError = message;
        onReconnectDelay?.(delay);
        waiting = true;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          wakeUp = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        waiting = false;
        wakeUp = null;
      }
    }
  };
  const running = run();
  // A returning upstream should not wait out a long backoff; nor should a fleet all come back in the same instant.
  liveness.on('back', () => {
    const delay = fullJitterDelayMs(0, BACK_JITTER_MS, BACK_JITTER_MS);
    onReconnectDelay?.(delay);
    setTimeout(() => wakeUp?.(), delay).unref();
  });
  auth.onAccepted(() => wakeUp?.());
  pool.on('unhealthy', (member) => leaveMember?.(member));

  return Object.assign(emitter, {
    revision: () => store.meta().revision,
    hasData: () => store.meta().revision > 0,
    authRequired: () => auth.isRequired(),
    authEnabled: () => auth.isEnabled(),
    waitForRevision: (revision: number, timeoutMs: number) => waiters.wait(revision, timeoutMs),
    hurry: () => wakeUp?.(),
    async adopt<T extends { revision: number }>(restore: () => Promise<T>): Promise<T> {
      if (closed || !waiting || adoption !== null) throw new Error('the mirror is syncing with etcd: nothing to adopt');
      const previous = store.meta().revision;
      const running = restore();
      adoption = running.then(
        () => undefined,
        () => undefined,
      );
      try {
        const result = await running;
        log.info({ revision: result.revision, previous }, 'mirror content adopted from a snapshot');
        advanced(result.revision);
        emitter.emit('adopted', result.revision, previous);
        return result;
      } finally {
        adoption = null;
      }
    },
    rederive(change: () => void, touches: (key: Buffer, rangeEnd: Buffer) => boolean) {
      change();
      emitter.emit('rederived', store.meta().revision, touches);
    },
    requestRelist(reason: string) {
      relistReason = reason;
      stream?.finish(null);
    },
    async close() {
      closed = true;
      wakeUp?.();
      stream?.finish(null);
      waiters.releaseAll();
      await running;
    },
  });
}

/**
 * At start, before any member answers: the store's content is served if it
 * holds keys the configuration still asks for (with --user, what the user
 * could read of them when last asked); anything else is discarded.
 */
function adoptHeldScope(store: MirrorStore, scope: MirrorScope, narrowed: boolean, log: Logger): void {
  const held = store.meta();
  if (held.revision === 0) return;
  const heldRanges = KeyRanges.parse(held.scope);
  if (heldRanges !== null && (heldRanges.describe() === scope.configured.describe() || (narrowed && scope.configured.includes(heldRanges)))) {
    scope.set(heldRanges);
    return;
  }
  log.warn({ held: held.scope, configured: scope.configured.describe() }, 'the mirror on disk holds other keys than --mirror-prefix asks for: discarded, rebuilding');
  store.wipe();
}
