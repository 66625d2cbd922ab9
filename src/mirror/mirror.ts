import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamPool } from '../upstream/pool';
import type { AuthGate } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import { KeyRanges } from '../etcd/key-ranges';
import { RevisionWaiters } from './revision-waiters';
import type { GrayscaleView } from '../grayscale/view';
import type { MirrorScope } from './mirror-scope';
import type { MirrorEvents } from './mirror-events';
import { MirrorWatch } from './mirror-watch';
import { Relister } from './relist';
import { ScopeRefresh } from './scope-refresh';
import { SnapshotAdoption } from './snapshot-adoption';
import { SyncBackoff } from './sync-backoff';
import { SyncLoop } from './sync-loop';

export type { MirrorEvents } from './mirror-events';

/** How long a member's Status, and what the mirror's user may read, may take to answer. */
const STATUS_TIMEOUT_MS = 3_000;

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
 * The parts: the loop (sync-loop.ts) with its backoff (sync-backoff.ts), the
 * list (relist.ts), the watch (mirror-watch.ts), what the mirror's user may
 * read (scope-refresh.ts) and content from a snapshot (snapshot-adoption.ts);
 * here they are joined and what they do is told to the mirror's followers.
 */
export function startMirror({ store, pool, liveness, log, scope, scopeRefreshMs = 60_000, auth, identity, onRevision, onWatchStream, onFailover, onReconnectDelay, listBytesPerSecond = 0, grayscale = null, onWithheld }: MirrorDeps): Mirror {
  adoptHeldScope(store, scope, identity.configured, log);
  const emitter = new EventEmitter<MirrorEvents>();
  const waiters = new RevisionWaiters(() => store.meta().revision);
  const advanced = (revision: number): void => {
    waiters.release(revision);
    onRevision?.(revision);
  };

  const relister = new Relister({
    store,
    scope,
    identity,
    auth,
    log,
    listBytesPerSecond,
    grayscale,
    onWithheld,
    onListed: (revision, previous) => {
      advanced(revision);
      emitter.emit('relisted', revision, previous);
    },
  });
  const scopeRefresh = new ScopeRefresh(scope, identity, relister, log, scopeRefreshMs, STATUS_TIMEOUT_MS, () => store.meta().revision > 0);
  const watch = new MirrorWatch({
    store,
    scope,
    identity,
    liveness,
    auth,
    scopeRefresh,
    log,
    grayscale,
    onWithheld,
    onWatchStream,
    onCommitted: (revision, events) => {
      advanced(revision);
      if (events.length > 0) emitter.emit('applied', revision, events);
    },
  });
  const backoff = new SyncBackoff(log, onReconnectDelay);
  // Content may be adopted only while the loop waits to try etcd again.
  const adoption: SnapshotAdoption = new SnapshotAdoption(store, log, (): boolean => loop.idle, (revision, previous) => {
    advanced(revision);
    emitter.emit('adopted', revision, previous);
  });
  const loop = new SyncLoop({
    store,
    pool,
    identity,
    auth,
    log,
    scopeRefresh,
    relister,
    watch,
    backoff,
    adoption,
    statusTimeoutMs: STATUS_TIMEOUT_MS,
    clusterRevision: { key: () => scope.probeKey(), metadata: (member) => identity.metadataFor(member), renew: (member, raftIndex) => identity.renewIfIssuedAfter(member, raftIndex) },
    onDiscarded: (previous) => emitter.emit('discarded', previous),
    onFailover,
  });
  // While the store cannot write, M stays where it is: whoever waits for a newer one is told now, and goes to etcd.
  store.onWriteNotice((notice) => {
    if (notice.kind === 'failed' && notice.held !== null) waiters.releaseAll();
  });
  liveness.on('back', () => backoff.wakeSoon());
  auth.onAccepted(() => backoff.wake());
  pool.on('unhealthy', (member) => watch.leave(member));

  return Object.assign(emitter, {
    revision: () => store.meta().revision,
    hasData: () => store.meta().revision > 0,
    authRequired: () => auth.isRequired(),
    authEnabled: () => auth.isEnabled(),
    waitForRevision: (revision: number, timeoutMs: number) => (store.writeHold() === null ? waiters.wait(revision, timeoutMs) : Promise.resolve(store.meta().revision >= revision)),
    hurry: () => backoff.wake(),
    adopt: <T extends { revision: number }>(restore: () => Promise<T>): Promise<T> => adoption.adopt(restore),
    rederive(change: () => void, touches: (key: Buffer, rangeEnd: Buffer) => boolean) {
      change();
      emitter.emit('rederived', store.meta().revision, touches);
    },
    requestRelist(reason: string) {
      relister.request(reason);
      watch.stop();
    },
    async close() {
      loop.close();
      waiters.releaseAll();
      await loop.done;
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
