import { EventEmitter } from 'node:events';
import type { AuthGate } from '../mirror/auth-gate';
import type { Mirror, MirrorEvents } from '../mirror/mirror';
import { MirroredRanges } from '../mirror/mirrored-ranges';
import { RevisionWaiters } from '../mirror/revision-waiters';
import type { MirrorStore } from '../store/store';
import type { MirrorNotice, ToPrimary } from './messages';

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

  const follow = (notice: MirrorNotice): void => {
    const previous = revision;
    revision = store.refresh().revision;
    switch (notice.kind) {
      case 'revision':
        // Each logged revision up to the new M, in order, as the mirror emits them.
        if (revision > previous) {
          for (const entry of store.eventsAfter(previous)) {
            if (entry.revision > revision) break;
            if (entry.events.length > 0) emitter.emit('applied', entry.revision, entry.events);
          }
        }
        break;
      case 'relisted':
      case 'adopted':
        emitter.emit(notice.kind, notice.revision, notice.previous);
        break;
      case 'discarded':
        emitter.emit('discarded', notice.previous);
        break;
      case 'rederived': {
        const ranges = MirroredRanges.fromPrefixes(notice.prefixes.map((prefix) => Buffer.from(prefix)));
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
      waiters.releaseAll();
    },
  });
}
