import type { EncodedEvent } from '../etcd/event-bytes';
import type { HeaderIdentity } from '../etcd/records';
import { toIdentity, toRevision, type WireWatchResponse } from '../etcd/wire';
import type { KeyRange, KeyRanges } from '../etcd/key-ranges';
import { RangeWatermark, type ProgressTrust } from './range-watermark';

/**
 * What a watch response delivered for the store: the mirrored events (the
 * gaps between ranges already dropped), the revision the store is complete
 * through after them, and the header they came with.
 */
export interface WatchDelivery {
  readonly events: EncodedEvent[];
  readonly through: number;
  readonly header: HeaderIdentity;
}

/**
 * Turns the mirror watch's responses into deliveries for the store. One
 * watch over the span of all mirrored ranges: each response's events in the
 * ranges, at once. One watch per range: events held until every range has
 * said it is past them (a RangeWatermark), then delivered in revision order.
 */
export class WatchDeliveries {
  /** The key ranges watched, in the order their create requests are sent. */
  readonly watched: readonly KeyRange[];
  /** Merges per-range watches into revision order; null for one watch over the span. */
  private readonly watermark: RangeWatermark | null;
  /** Range index by watch ID, as etcd confirms each create in the order they were sent. */
  private readonly rangeOfWatch = new Map<string, number>();
  private nextCreated = 0;

  constructor(
    private readonly ranges: KeyRanges,
    separate: boolean,
    private readonly startRevision: number,
    trust: ProgressTrust,
    private readonly deliver: (delivery: WatchDelivery) => void,
  ) {
    this.watched = separate ? ranges.ranges : [ranges.watchRange()];
    this.watermark = separate ? new RangeWatermark(this.watched.length, startRevision - 1, trust, Date.now()) : null;
  }

  /** True while events wait for a range that has said nothing yet (its progress is then asked sooner). */
  hasHeld(): boolean {
    return this.watermark?.hasHeld() ?? false;
  }

  /** True when one watch per range is merged (events may be held). */
  get merging(): boolean {
    return this.watermark !== null;
  }

  /** etcd confirmed one create request; true once every watch is created. */
  created(response: WireWatchResponse): boolean {
    this.watermark?.expectCatchUp(toRevision(response.header?.revision) - this.startRevision + 1, Date.now());
    this.rangeOfWatch.set(response.watch_id ?? '0', this.nextCreated);
    this.nextCreated += 1;
    return this.nextCreated === this.watched.length;
  }

  /** Delivers what a response makes ready; throws when it cannot be placed or committed. */
  receive(response: WireWatchResponse, events: EncodedEvent[]): void {
    if (this.watermark === null) this.onSpanResponse(response, events);
    else this.onRangeResponse(this.watermark, response, events);
  }

  private onSpanResponse(response: WireWatchResponse, received: EncodedEvent[]): void {
    if (received.length === 0) return;
    const ranges = this.ranges;
    const through = received.reduce((highest, event) => Math.max(highest, event.kv.mod_revision), 0);
    this.deliver({ events: ranges.whole ? received : received.filter((event) => ranges.contains(event.kv.key)), through, header: toIdentity(response.header) });
  }

  private onRangeResponse(merger: RangeWatermark, response: WireWatchResponse, received: EncodedEvent[]): void {
    const range = this.rangeOfWatch.get(response.watch_id ?? '0');
    // Events nobody can place would be lost: the stream is given up and resumed from the last commit instead.
    if (received.length > 0 && range === undefined) throw new Error(`mirror watch: events for watch ${response.watch_id ?? '0'}, which the mirror did not create`);
    if (received.length > 0 && range !== undefined) merger.events(range, received);
    else if (received.length === 0 && response.created !== true) {
      const revision = toRevision(response.header?.revision);
      // etcd's answer to a progress request names no watch (-1); a periodic notification names its own.
      if (range !== undefined && response.watch_id !== '-1') merger.watchProgress(range, revision);
      else merger.streamProgress(revision, Date.now());
    }
    const ready = merger.take();
    if (ready !== null) this.deliver({ events: ready.events, through: ready.through, header: toIdentity(response.header) });
  }
}
