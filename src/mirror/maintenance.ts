import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { MirrorStore } from '../store/store';

/** How often the log is pruned and the store gauges refreshed. */
export const MAINTENANCE_INTERVAL_MS = 10_000;

export interface StoreMaintenance {
  /** Runs one round now (tests, shutdown). */
  runOnce(): Promise<void>;
  close(): void;
}

/**
 * Keeps the event log to the last `history` revisions, in the background and
 * in LMDB's asynchronous write transactions, so readers are never blocked;
 * and publishes the store's size.
 */
export function startStoreMaintenance(store: MirrorStore, history: number, metrics: Metrics, log: Logger): StoreMaintenance {
  let running: Promise<void> | null = null;
  const round = async (): Promise<void> => {
    const { revision, logStart } = store.meta();
    const keepFrom = revision - history + 1;
    if (logStart > 0 && keepFrom > logStart) await store.pruneLog(keepFrom);
    const stats = store.stats();
    metrics.storeKeys.set(stats.keys);
    metrics.storeLogRevisions.set(stats.logRevisions);
    metrics.storeBytes.set(stats.bytes);
  };
  const runOnce = (): Promise<void> => {
    running ??= round()
      .catch((error: unknown) => log.error({ err: error }, 'store maintenance failed'))
      .finally(() => {
        running = null;
      });
    return running;
  };
  const timer = setInterval(() => void runOnce(), MAINTENANCE_INTERVAL_MS);
  timer.unref();
  void runOnce();
  return { runOnce, close: () => clearInterval(timer) };
}
