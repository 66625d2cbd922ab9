import type { EncodedEvent } from '../etcd/event-bytes';

/** What the mirror tells those who follow it (the watch hub, the response cache, a primary's workers). */
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
