import type { Logger } from '../log';
import { fullJitterDelayMs } from './reconnect-delay';

const INITIAL_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;
/** When etcd answers again, each proxy resumes within this long, at a random moment. */
const BACK_JITTER_MS = 2_000;

/**
 * The mirror's wait between failed attempts to sync with etcd: growing with
 * each failure in a row, jittered, and cut short when there is reason to try
 * now (etcd answers again, a client waits, the mirror closes).
 */
export class SyncBackoff {
  /** Failed attempts since the last one that got as far as watching. */
  private failures = 0;
  /** The last failure logged: the same one again is not logged again. */
  private lastError = '';
  /** Ends the current wait at once; null while not waiting. */
  private wakeUp: (() => void) | null = null;
  /** True while waiting out a delay: the only time the mirror's content may be replaced from elsewhere. */
  private pausing = false;

  constructor(
    private readonly log: Logger,
    /** Called with each wait before the mirror tries etcd again, ms (metrics). */
    private readonly onDelay?: (ms: number) => void,
  ) {}

  get waiting(): boolean {
    return this.pausing;
  }

  /** An attempt got through to etcd: the next failure waits the shortest time again. */
  succeeded(): void {
    this.failures = 0;
  }

  /** Waits before the next attempt after `error`, logging it when it differs from the last. */
  async after(error: unknown): Promise<void> {
    const message = error instanceof Error ? error.message : String(error);
    const delay = fullJitterDelayMs(this.failures, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS);
    this.failures += 1;
    if (message !== this.lastError) this.log.warn({ err: message, retryInMs: delay }, 'mirror sync interrupted');
    this.lastError = message;
    this.onDelay?.(delay);
    this.pausing = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delay);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.pausing = false;
    this.wakeUp = null;
  }

  /** Ends the current wait, if any, now. */
  wake(): void {
    this.wakeUp?.();
  }

  /**
   * etcd answers again: a returning upstream should not wait out a long
   * backoff, nor should a fleet all come back in the same instant.
   */
  wakeSoon(): void {
    const delay = fullJitterDelayMs(0, BACK_JITTER_MS, BACK_JITTER_MS);
    this.onDelay?.(delay);
    setTimeout(() => this.wake(), delay).unref();
  }
}
