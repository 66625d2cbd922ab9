import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { MirrorStore } from '../store/store';
import { isOutOfSpace } from '../store/write-hold';
import { findCompactRevision } from './compaction-tracker';
import { watchStoreSpace } from './store-space';

/** How often the log is pruned and the store gauges refreshed. */
export const MAINTENANCE_INTERVAL_MS = 10_000;
/**
 * How often etcd is asked whether it compacted past the log. A read of a past
 * revision, or a watch replaying the log, asks etcd itself while a member
 * answers, so this only prunes the log and bounds what an outage serves from
 * it: every 5 minutes is enough, and a fleet of idle proxies multiplies it.
 */
export const FOLLOW_COMPACTION_INTERVAL_MS = 300_000;

export interface StoreMaintenance {
  /** Runs one round now (tests, shutdown). */
  runOnce(): Promise<void>;
  /** A read found etcd compacted past the log: learn the compaction point now, not at the next turn of the schedule. */
  followCompactionNow(): Promise<void>;
  close(): void;
}

/**
 * Keeps the event log to the last `history` revisions, in the background, in
 * short write transactions (LMDB never blocks its readers); publishes the
 * store's size; and, when a write fails for lack of room, waits for room
 * and resumes the store's writes (store-space.ts).
 */
export function startStoreMaintenance(
  store: MirrorStore,
  history: number,
  metrics: Metrics,
  log: Logger,
  isCompacted?: (revision: number) => Promise<boolean | undefined>,
): StoreMaintenance {
  const space = watchStoreSpace(store, metrics, log);
  let running: Promise<void> | null = null;
  let followedAt = Number.NEGATIVE_INFINITY;
  /**
   * A compaction made on etcd directly (or by its auto-compaction) reaches
   * no watch; a probe of the oldest revision the log could answer finds it,
   * so reads below etcd's compaction point get etcd's compacted error.
   */
  const followCompaction = async (): Promise<void> => {
    if (isCompacted === undefined || Date.now() - followedAt < FOLLOW_COMPACTION_INTERVAL_MS) return;
    followedAt = Date.now();
    const { revision, logStart, compactRevision } = store.meta();
    const oldest = Math.max(compactRevision, logStart - 1);
    if (logStart === 0 || oldest >= revision || (await isCompacted(oldest)) !== true) return;
    const found = await findCompactRevision(isCompacted, oldest, revision);
    if (found === undefined) return;
    log.info({ compactRevision: found }, 'upstream compaction followed');
    store.updateMeta({ compactRevision: found });
  };
  const round = async (): Promise<void> => {
    await followCompaction();
    const { revision, logStart, compactRevision } = store.meta();
    const keepFrom = Math.max(revision - history + 1, compactRevision);
    if (logStart > 0 && keepFrom > logStart) await store.pruneLog(keepFrom);
    const stats = store.stats();
    metrics.storeKeys.set(stats.keys);
    metrics.storeLogRevisions.set(stats.logRevisions);
    metrics.storeBytes.set(stats.bytes);
  };
  const runOnce = (): Promise<void> => {
    running ??= round()
      // No room is logged once, where the store begins holding its writes back.
      .catch((error: unknown) => (isOutOfSpace(error) ? undefined : log.error({ err: error }, 'store maintenance failed')))
      .finally(() => {
        running = null;
      });
    return running;
  };
  const timer = setInterval(() => void runOnce(), MAINTENANCE_INTERVAL_MS);
  timer.unref();
  void runOnce();
  return {
    runOnce,
    followCompactionNow: () => {
      followedAt = Number.NEGATIVE_INFINITY;
      return runOnce();
    },
    close: () => {
      clearInterval(timer);
      space.close();
    },
  };
}
