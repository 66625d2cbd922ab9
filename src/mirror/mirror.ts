import { EventEmitter } from 'node:events';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import type { EncodedEvent } from '../etcd/event-bytes';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamMember, UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import { toIdentity, toRevision, type WireHeader, type WireWatchResponse } from '../etcd/wire';
import { readWatchResponse } from '../etcd/watch-bytes';
import { AuthRefused, isAuthCancelReason, type AuthGate } from './auth-gate';
import type { UpstreamIdentity } from '../upstream/identity';
import { fullJitterDelayMs } from './reconnect-delay';
import { listInto } from './lister';
import { MirroredRanges } from './mirrored-ranges';
import { RevisionWaiters } from './revision-waiters';
import { reasonedCall } from '../upstream/call-reason';
import type { GrayscaleView } from '../grayscale/view';

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
  /** What to mirror: the whole keyspace or some prefixes. */
  readonly ranges: MirroredRanges;
  /** Whether the upstream lets the mirror serve (auth off); the mirror's own calls feed it too. */
  readonly auth: AuthGate;
  /** Who the mirror's calls are made as when etcd has auth on (--user). */
  readonly identity: UpstreamIdentity;
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

/** The watch's member stopped answering: resume elsewhere at once, without the error backoff. */
class MemberFailed extends Error {
  constructor(readonly member: string) {
    super(`upstream member ${member} stopped answering; moving the mirror watch`);
  }
}

class RelistNeeded extends Error {
  constructor(readonly compactRevision: number) {
    super(`upstream compacted past the mirror (compact revision ${compactRevision})`);
  }
}

/**
 * Keeps the store an exact copy of the upstream keyspace: list it at one
 * revision when the store is empty, then watch from M+1 with prev_kv; each
 * watch response is one LMDB transaction, committed before anyone is told.
 * Reconnects resume at M+1; a compaction past M means a fresh list; another
 * cluster, or one whose revision is behind M, means the store is wiped first.
 */
export function startMirror({ store, pool, liveness, log, ranges, auth, identity, onRevision, onWatchStream, onFailover, onReconnectDelay, listBytesPerSecond = 0, grayscale = null, onWithheld }: MirrorDeps): Mirror {
  const held = store.meta();
  if (held.revision > 0 && held.scope !== ranges.describe()) {
    log.warn({ held: held.scope, configured: ranges.describe() }, 'the mirror on disk holds other keys than --mirror-prefix asks for: discarded, rebuilding');
    store.wipe();
  }
  const emitter = new EventEmitter<MirrorEvents>();
  const waiters = new RevisionWaiters(() => store.meta().revision);
  let closed = false;
  let stream: ClientDuplexStream<object, Buffer> | null = null;
  let leaveMember: ((member: UpstreamMember) => void) | null = null;
  /** The member the last watch ran on: resuming on another is a failover. */
  let watchedMember: UpstreamMember | null = null;
  let wakeUp: (() => void) | null = null;
  let relistReason: string | null = null;
  /** True while the loop waits out its delay before trying etcd again: the only time content may be adopted. */
  let waiting = false;
  /** Content being adopted (never rejects): the loop's next attempt waits for it. */
  let adoption: Promise<void> | null = null;

  const advanced = (revision: number): void => {
    waiters.release(revision);
    onRevision?.(revision);
  };

  const checkIdentity = async (member: UpstreamMember): Promise<void> => {
    const status = await callUpstream<{ header?: WireHeader }>(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: STATUS_TIMEOUT_MS, reason: 'mirror-status' });
    const upstream = toIdentity(status.header);
    const upstreamRevision = toRevision(status.header?.revision);
    const meta = store.meta();
    if (meta.identity !== null && meta.identity.cluster_id !== upstream.cluster_id) {
      log.warn({ mirrored: meta.identity.cluster_id, upstream: upstream.cluster_id }, 'upstream is another cluster: mirror discarded, rebuilding');
      store.wipe();
      emitter.emit('discarded', meta.revision);
    } else if (meta.revision > upstreamRevision) {
      log.warn({ mirrorRevision: meta.revision, upstreamRevision }, 'upstream revision is behind the mirror (restored from a backup?): mirror discarded, rebuilding');
      store.wipe();
      emitter.emit('discarded', meta.revision);
    }
  };

  const relist = async (member: UpstreamMember, compactRevision: number): Promise<void> => {
    const started = Date.now();
    const previous = store.meta().revision;
    const result = await listInto(store, member.client, ranges, compactRevision, () => identity.metadataFor(member), listBytesPerSecond, grayscale);
    onWithheld?.();
    log.info({ revision: result.revision, keys: result.keys, ms: Date.now() - started }, 'mirror listed the upstream keyspace');
    // A list is an anonymous read of everything mirrored: the upstream lets anyone read.
    auth.accepted();
    advanced(result.revision);
    emitter.emit('relisted', result.revision, previous);
  };

  const watchFrom = (member: UpstreamMember, startRevision: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const watch = etcdMethod('etcdserverpb.Watch', 'Watch');
      // Responses stay etcd's bytes: each event is stored as etcd encoded it, never decoded and encoded again.
      // Require-leader: etcd ends this watch when its member has had no leader for a few election
      // timeouts, and refuses it while it has none, so the mirror never follows a member cut off.
      const metadata = identity.metadataFor(member);
      metadata.set('hasleader', 'true');
      const call = member.client.makeBidiStreamRequest(watch.path, watch.requestSerialize, passBytes, metadata, reasonedCall('mirror-watch')) as ClientDuplexStream<object, Buffer>;
      stream = call;
      onWatchStream?.(1);
      liveness.used(member);
      let settled = false;
      // A quiet stream is asked for its progress each second: etcd answers on the stream (no RPC, a few
      // bytes), which tells the member is there and has a leader, so liveness need not probe it.
      let heardAt = Date.now();
      const every = liveness.evidenceIntervalMs;
      const progress = setInterval(() => {
        if (Date.now() - heardAt >= every / 2) call.write({ progress_request: {} });
      }, every);
      progress.unref();
      const finish = (error: Error | null): void => {
        if (settled) return;
        settled = true;
        clearInterval(progress);
        onWatchStream?.(-1);
        stream = null;
        leaveMember = null;
        call.cancel();
        if (error === null) resolve();
        else reject(error);
      };
      call.on('data', (bytes: Buffer) => {
        heardAt = Date.now();
        liveness.heard(member);
        let response: WireWatchResponse;
        let received: EncodedEvent[];
        try {
          ({ response, events: received } = readWatchResponse(bytes));
        } catch (error) {
          log.error({ err: error }, 'mirror watch response does not parse; reconnecting');
          finish(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (response.canceled === true) {
          const compacted = toRevision(response.compact_revision);
          const reason = response.cancel_reason ?? '';
          if (compacted > 0) finish(new RelistNeeded(compacted));
          else if (isAuthCancelReason(reason)) finish(new AuthRefused(reason));
          else finish(new Error(`upstream cancelled the mirror watch: ${reason === '' ? 'no reason' : reason}`));
          return;
        }
        if (response.created === true) auth.accepted();
        if (received.length === 0) return;
        // The watch spans the gaps between mirrored prefixes too: their events are dropped,
        // but their revisions still prove the mirrored keys unchanged up to there.
        const through = received.reduce((highest, event) => Math.max(highest, event.kv.mod_revision), 0);
        const mirrored = ranges.whole ? received : received.filter((event) => ranges.contains(event.kv.key));
        try {
          // A resumed watch may repeat the seam: events the store holds already are not seen again.
          const fresh = mirrored.filter((event) => event.kv.mod_revision > store.meta().revision);
          const view = grayscale === null ? { events: fresh, withheld: [] } : grayscale.viewEvents(fresh, (key) => store.get(key));
          const events = view.events;
          const revision = store.applyEvents(events, toIdentity(response.header), through, view.withheld);
          if (view.withheld.length > 0) onWithheld?.();
          advanced(revision);
          if (events.length > 0) emitter.emit('applied', revision, events);
        } catch (error) {
          log.error({ err: error }, 'mirror could not commit a watch response; reconnecting');
          finish(error instanceof Error ? error : new Error(String(error)));
        }
      });
      // A paused or partitioned member keeps the stream open and silent: its probes tell first.
      leaveMember = (failed) => {
        if (failed === member) finish(new MemberFailed(member.endpoint.url));
      };
      call.on('error', (error) => finish(error));
      call.on('end', () => finish(new Error('upstream ended the mirror watch')));
      call.write({
        create_request: { ...MirroredRanges.toRequest(ranges.watchRange()), start_revision: String(startRevision), prev_kv: true, progress_notify: true },
      });
    });

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
        if (member !== undefined) identity.observe(member, error);
        auth.observe(error);
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
      stream?.cancel();
    },
    async close() {
      closed = true;
      wakeUp?.();
      stream?.cancel();
      waiters.releaseAll();
      await running;
    },
  });
}
