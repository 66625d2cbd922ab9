import type { Metadata } from '@grpc/grpc-js';
import { STALE_HEADER } from '../etcd/metadata';

/** How often, while the tier is stale, the upstream is asked again whether it still is. */
export const TIER_RECHECK_MS = 1_000;

/**
 * Whether the upstream tier (another etcd-cache-proxy) is serving stale, as
 * its own answers say: a regional cut off from etcd answers from its mirror
 * with the stale mark, and the edge must not call those answers fresh.
 *
 * Learned from calls the proxy makes anyway (the read barrier's Range, the
 * reads it forwards): a marked answer makes the tier stale from then, an
 * unmarked one (etcd's own, or a fresh regional's) makes it fresh. The hot
 * read path only reads a field: no call of its own. While stale, the recheck
 * (the read barrier's call) asks again every second, so a proxy that only
 * serves serializable reads from its mirror still finds out when the tier
 * recovers. With --workers, what one serving process learns goes through the
 * primary to all (`onChange`, `adopt`), so every process answers the same.
 */
export class TierStaleness {
  private since: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private recheck: () => Promise<unknown> = () => Promise.resolve();
  private changed: (since: number | null) => void = () => undefined;

  /** What asks the upstream again while stale. */
  recheckWith(recheck: () => Promise<unknown>): void {
    this.recheck = recheck;
  }

  /** Told when this process's own calls change what it knows (not when it adopts what another learned). */
  onChange(listener: (since: number | null) => void): void {
    this.changed = listener;
  }

  /** The response headers of an answer of the upstream; none (an answer whose headers never came) says nothing. */
  noteAnswer(headers: Metadata | null): void {
    if (headers === null) return;
    const marked = headers.get(STALE_HEADER)[0] === 'true';
    if (marked === (this.since !== null)) return;
    this.set(marked ? Date.now() : null);
    this.changed(this.since);
  }

  /** What another serving process learned, as the primary passes it on. */
  adopt(since: number | null): void {
    this.set(since);
  }

  isStale(): boolean {
    return this.since !== null;
  }

  /** Since when the tier has answered marked stale (epoch ms), or null while it answers fresh. */
  staleSince(): number | null {
    return this.since;
  }

  close(): void {
    this.set(null);
  }

  private set(since: number | null): void {
    this.since = since;
    if (since === null) {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
    } else if (this.timer === null) {
      this.timer = setInterval(() => {
        // A failed recheck says nothing new (the tier or this side cannot answer): the mark stays.
        this.recheck().catch(() => undefined);
      }, TIER_RECHECK_MS);
      this.timer.unref();
    }
  }
}
