import type { EncodedEvent } from '../etcd/event-bytes';

/**
 * How far a progress response the stream did not ask per watch may be
 * believed. etcd answers a progress request made on a stream with its
 * current revision; before 3.4.31 / 3.5.13 it did so without waiting for the
 * stream's watchers to have sent their events (etcd issues 15220, 17507), so
 * the answer may overtake events still queued. `reliable`: such answers are
 * exact. `quiet`: an answer counts only once a later one, at least
 * `quietMs` after it, came with no event in between, and the stream has had
 * time to catch up from where it started.
 */
export type ProgressTrust = { readonly kind: 'reliable' } | { readonly kind: 'quiet'; readonly quietMs: number; readonly catchUpMs: number };

/** Bytes of events held back at most before the stream is given up (and resumed from what is committed). */
export const MAX_HELD_BYTES = 64 * 1024 * 1024;

export class HeldTooMuch extends Error {
  constructor(readonly bytes: number) {
    super(`mirror watch: ${bytes} bytes of events held back waiting for a range that does not report progress; resuming from the last commit`);
  }
}

/** What one held event costs the bound: its bytes as etcd sent them, and its key. */
function heldSize(event: EncodedEvent): number {
  return event.kv.key.length + event.bytes.length;
}

interface Held {
  readonly range: number;
  readonly event: EncodedEvent;
}

/**
 * Merges several watches of one stream (one per mirrored range, because the
 * mirror's user may not read the keys between them) into one sequence of
 * commits in revision order. A range is complete through the highest
 * revision of the events it delivered (each watch delivers its own events
 * in order, whole revisions at a time), or through a progress response that
 * can be believed. What every range is complete through (the watermark) is
 * committed; events above it wait, so the store's revision keeps meaning
 * "every event up to here is in", and nothing reaches watchers out of order.
 */
export class RangeWatermark {
  /** Per range: every event up to this revision has been delivered. */
  private readonly through: number[];
  private held: Held[] = [];
  private heldBytes = 0;
  /** Events received since the stream opened; a quiet progress candidate needs none to arrive after it. */
  private eventsSeen = 0;
  private candidate: { revision: number; at: number; eventsSeen: number } | null = null;
  /** In `quiet` trust, no stream progress counts before this time. */
  private catchUpUntil: number;

  constructor(
    rangeCount: number,
    /** The committed revision the watches start after. */
    private committed: number,
    private readonly trust: ProgressTrust,
    openedAt: number,
  ) {
    this.through = new Array<number>(rangeCount).fill(committed);
    this.catchUpUntil = trust.kind === 'quiet' ? openedAt + trust.catchUpMs : openedAt;
  }

  /**
   * A watch was created behind etcd's revision (by `behind` revisions): etcd
   * sends what it missed in rounds of 1 000 revisions every 100 ms, without
   * a word for a range that has none, so stream progress waits that long.
   */
  expectCatchUp(behind: number, now: number): void {
    if (this.trust.kind !== 'quiet' || behind <= 0) return;
    this.catchUpUntil = Math.max(this.catchUpUntil, now + this.trust.catchUpMs + 100 * Math.ceil(behind / 1_000));
  }

  /** The revision every range is complete through. */
  watermark(): number {
    return Math.min(...this.through);
  }

  /** Events are held above the watermark: a range is behind, and progress should be asked for. */
  hasHeld(): boolean {
    return this.held.length > 0;
  }

  /** Events of one range's watch, in the order etcd sent them. */
  events(range: number, events: readonly EncodedEvent[]): void {
    if (events.length === 0) return;
    this.eventsSeen += 1;
    let highest = this.through[range] ?? this.committed;
    for (const event of events) {
      // A resumed watch may repeat the seam: what is committed is not taken again.
      if (event.kv.mod_revision <= this.committed) continue;
      this.held.push({ range, event });
      this.heldBytes += heldSize(event);
      highest = Math.max(highest, event.kv.mod_revision);
    }
    this.through[range] = highest;
    if (this.heldBytes > MAX_HELD_BYTES) throw new HeldTooMuch(this.heldBytes);
  }

  /** A progress response etcd sent for one watch (periodic progress_notify): in order with that watch's events. */
  watchProgress(range: number, revision: number): void {
    this.through[range] = Math.max(this.through[range] ?? 0, revision);
  }

  /** A progress response to a request made on the stream (all its watches). */
  streamProgress(revision: number, now: number): void {
    if (this.trust.kind === 'reliable') {
      this.raiseAll(revision);
      return;
    }
    const candidate = this.candidate;
    const answer = { revision, at: now, eventsSeen: this.eventsSeen };
    if (candidate !== null && candidate.eventsSeen === this.eventsSeen && candidate.at >= this.catchUpUntil && now - candidate.at >= this.trust.quietMs) {
      this.raiseAll(candidate.revision);
      this.candidate = answer;
      return;
    }
    // An answer is a candidate from a stream that has had time to catch up, until an event comes after it.
    if (candidate === null || candidate.eventsSeen !== this.eventsSeen || candidate.at < this.catchUpUntil) this.candidate = answer;
  }

  private raiseAll(revision: number): void {
    for (let i = 0; i < this.through.length; i += 1) this.through[i] = Math.max(this.through[i] ?? 0, revision);
  }

  /**
   * What may be committed now: the held events up to the watermark, in
   * revision order (a revision's events range by range, each range's in
   * etcd's order), and the watermark. Null when the watermark has not moved.
   */
  take(): { events: EncodedEvent[]; through: number } | null {
    const through = this.watermark();
    if (through <= this.committed) return null;
    const ready: Held[] = [];
    const rest: Held[] = [];
    for (const held of this.held) (held.event.kv.mod_revision <= through ? ready : rest).push(held);
    // Stable: events of one revision keep their range order, and each range its own order.
    ready.sort((a, b) => a.event.kv.mod_revision - b.event.kv.mod_revision || a.range - b.range);
    this.held = rest;
    for (const held of ready) this.heldBytes -= heldSize(held.event);
    this.committed = through;
    return { events: ready.map((held) => held.event), through };
  }
}
