import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { RESERVE_BYTES } from '../store/space-reserve';
import type { MirrorStore } from '../store/store';

/** How often the free space is looked at while the store holds its writes back. */
export const SPACE_CHECK_INTERVAL_MS = 1_000;
/** Free bytes wanted before writes resume, at the least: a list or a burst of events needs more than a page. */
export const RESUME_MIN_FREE_BYTES = 8 * 1024 * 1024;
/** What the store claims ahead of LMDB besides a write's own need (space-reserve.ts), and a chunk's rounding. */
const RESERVE_SLACK_BYTES = RESERVE_BYTES + 1024 * 1024;

export interface StoreSpaceOptions {
  readonly intervalMs?: number;
  readonly minFreeBytes?: number;
}

/**
 * Watches the store's writes for a failure for lack of room: it is logged
 * once, at error, and shown in the metrics; then the free space on the
 * store's file system is looked at every second, and writes resume (the
 * mirror catches up from M+1) once there is a margin: the largest of a few
 * MiB, an eighth of what the store takes, and what the write that found the
 * disk full wanted (a page of a list can be large), so that a resume is not
 * met by the same failure at once.
 */
export function watchStoreSpace(store: MirrorStore, metrics: Metrics, log: Logger, options: StoreSpaceOptions = {}): { close(): void } {
  const intervalMs = options.intervalMs ?? SPACE_CHECK_INTERVAL_MS;
  const minFreeBytes = options.minFreeBytes ?? RESUME_MIN_FREE_BYTES;
  let timer: NodeJS.Timeout | null = null;
  let checking = false;
  let closed = false;
  metrics.storeFull.set(0);

  const wanted = (): number => Math.max(minFreeBytes, Math.ceil(store.stats().bytes / 8), (store.writeHold()?.needBytes ?? 0) + RESERVE_SLACK_BYTES);

  const check = async (): Promise<void> => {
    if (checking || store.writeHold() === null) return;
    checking = true;
    try {
      const free = await store.freeBytes();
      const need = wanted();
      if (free >= need && !closed) store.resumeWrites();
    } catch (error) {
      log.warn({ err: error }, 'could not read the free space of the mirror store');
    } finally {
      checking = false;
    }
  };

  const held = (error: unknown): void => {
    metrics.storeFull.set(1);
    log.error(
      { err: error, revision: store.meta().revision, resumeAtFreeBytes: wanted() },
      'mirror store is full: its writes are held back, the mirror stays at its revision (etcd answers what needs a newer one) until there is room',
    );
    timer ??= setInterval(() => void check(), intervalMs);
    timer.unref();
  };

  store.onWriteNotice((notice) => {
    if (notice.kind === 'failed') {
      metrics.storeWriteFailures.inc({ reason: notice.held === null ? 'other' : 'no_space' });
      if (notice.held !== null) held(notice.error);
      return;
    }
    metrics.storeFull.set(0);
    if (timer !== null) clearInterval(timer);
    timer = null;
    log.info({ heldMs: notice.heldMs, revision: store.meta().revision }, 'mirror store has room again: writes resumed, the mirror catches up from its revision');
  });

  return {
    close() {
      closed = true;
      if (timer !== null) clearInterval(timer);
      timer = null;
    },
  };
}
