import { EventEmitter } from 'node:events';
import type { EncodedEvent } from '../etcd/event-bytes';
import type { AuthGate } from '../auth/auth-gate';
import type { Mirror, MirrorEvents } from '../mirror/mirror';
import { KeyRanges } from '../etcd/key-ranges';
import { RevisionWaiters } from '../mirror/revision-waiters';
import type { MirrorStore } from '../store/store';
import type { MirrorNotice, ToPrimary } from './messages';

/** How soon a worker reads the store again when a commit it was told of is not visible yet. */
const CATCH_UP_RETRY_MS = 2;
/**
 * How long a worker waits for the primary's notice of a store it finds
 * replaced (its log no longer goes back to what the worker last followed),
 * before it takes the store as listed anew itself: the log pruned past a
 * worker that fell that far behind brings no notice.
 */
const REPLACED_NOTICE_WAIT_MS = 1_000;

export interface FollowerMirror extends Mirror {
  /** A change the primary committed: the store is read again, and this process's followers are told. */
  follow(notice: MirrorNotice): void;
}

/**
 * The mirror as a worker process sees it: the primary process keeps it and
 * tells each commit; the worker reads what changed from the store (open
 * read-only) and tells its own watch hub, caches and waiting writes, exactly
 * as the mirror would in one process. What the worker learns that the
 * mirror should act on (a client waiting, a difference) goes to the primary.
 */
export function startFollowerMirror(store: MirrorStore, auth: AuthGate, send: (message: ToPrimary) => void): FollowerMirror {
  const emitter = new EventEmitter<MirrorEvents>();
  let revision = store.refresh().revision;
  const waiters = new RevisionWaiters(() => revision);

  /** The newest revision the primary told of; the store may show it a moment later than the notice comes. */
  let told = revision;
  let pending: (() => void) | null = null;
  /**
   * The next logged revision after M, emitted as the mirror emits it; then the next one in a later turn
   * of the event loop, so that the watch streams send one revision's events before the next is queued
   * (a worker that was busy must not queue many revisions at once: a watch stream's unread bytes are bounded).
   */
  const step = (): void => {
    pending = null;
    const now = store.refresh();
    const visible = Math.max(revision, now.revision);
    // The store was replaced (a list, a snapshot adopted) and the primary's notice of it is still on its way:
    // what changed since `revision` is not in the log, so neither the caches nor the watches can be told
    // key by key. Until the notice, this process stays at `revision` (its reads then read the store afresh,
    // and kept answers are not served under the new revision).
    if (visible > revision && now.logStart > revision + 1) {
      const timer = setTimeout(() => {
        pending = null;
        const previous = revision;
        revision = store.refresh().revision;
        told = Math.max(told, revision);
        emitter.emit('relisted', revision, previous);
        waiters.release(revision);
      }, REPLACED_NOTICE_WAIT_MS);
      pending = () => clearTimeout(timer);
      return;
    }
    const next = nextWithEvents(store, revision, visible);
    revision = next === null ? visible : next.revision;
    if (next !== null) emitter.emit('applied', next.revision, next.events);
    waiters.release(revision);
    if (revision < visible) {
      const immediate = setImmediate(step);
      pending = () => clearImmediate(immediate);
    } else if (revision < told) {
      // Not visible here yet: read again shortly rather than wait for a next commit that may never come.
      const timer = setTimeout(step, CATCH_UP_RETRY_MS);
      pending = () => clearTimeout(timer);
    }
  };

  const follow = (notice: MirrorNotice): void => {
    if (notice.kind === 'revision') {
      told = Math.max(told, notice.revision);
      if (pending === null) step();
      return;
    }
    // Relisted, adopted, discarded, rederived: the store as it is now is the mirror (M may even go down).
    pending?.();
    pending = null;
    revision = store.refresh().revision;
    told = revision;
    switch (notice.kind) {
      case 'relisted':
      case 'adopted':
        emitter.emit(notice.kind, notice.revision, notice.previous);
        break;
      case 'discarded':
        emitter.emit('discarded', notice.previous);
        break;
      case 'rederived': {
        const ranges = KeyRanges.fromPrefixes(notice.prefixes.map((prefix) => Buffer.from(prefix)));
        emitter.emit('rederived', notice.revision, (key, rangeEnd) => notice.prefixes.length > 0 && ranges.touches(key, rangeEnd));
        break;
      }
    }
    waiters.release(revision);
  };

  return Object.assign(emitter, {
    follow,
    revision: () => revision,
    hasData: () => revision > 0,
    authRequired: () => auth.isRequired(),
    authEnabled: () => auth.isEnabled(),
    waitForRevision: (target: number, timeoutMs: number) => waiters.wait(target, timeoutMs),
    hurry: () => send({ type: 'ecp:hurry' }),
    requestRelist: (reason: string) => send({ type: 'ecp:relist', reason }),
    rederive(): void {
      throw new Error('the grayscale view is derived by the primary process');
    },
    adopt<T extends { revision: number }>(): Promise<T> {
      return Promise.reject(new Error('only the primary process adopts snapshots'));
    },
    close: async () => {
      pending?.();
      waiters.releaseAll();
    },
  });
}

/** The first logged revision after `after`, up to `visible`, that holds events (compactions log none). */
function nextWithEvents(store: MirrorStore, after: number, visible: number): { revision: number; events: readonly EncodedEvent[] } | null {
  for (const entry of store.eventsAfter(after)) {
    if (entry.revision > visible) return null;
    if (entry.events.length > 0) return entry;
  }
  return null;
}
