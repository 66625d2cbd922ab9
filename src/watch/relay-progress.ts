import type { ProgressTrust } from '../mirror/range-watermark';

/** A relay stream asks etcd for progress at most this often: every session waiting on it shares the answer. */
const ASK_GAP_MS = 50;
/**
 * A request unanswered this long is taken as lost: etcd 3.5.13+ defers its
 * answer until the stream's watchers are synced (and sends none on a stream
 * that has no watcher), and ignores further requests meanwhile.
 */
const ANSWER_LOST_MS = 5_000;
/** Requests remembered at once: the one in flight, and one sent after it was taken as lost. */
const MAX_ASKED = 2;

/** An answer to believe: every watch created before the `covers`-th create has sent its events up to `revision`. */
export interface StreamProgressFact {
  readonly revision: number;
  readonly covers: number;
  /** When it was answered. */
  readonly at: number;
  /** When the request it answers was sent: etcd's revision then is at most `revision`. */
  readonly askedAt: number;
  /** Believed as an older etcd's: only watches done catching up by `at` count (etcd then syncs them apart from the answer). */
  readonly quiet: boolean;
}

/**
 * The progress requests of one relay stream to etcd, and which answers
 * count. etcd answers a progress request (watch ID -1, its current revision)
 * once every watcher of the stream has sent its events, from 3.4.31 / 3.5.13
 * on; before, at once, so its answer may overtake events still queued. As
 * the mirror's own stream does, an older etcd's answer counts only once a
 * later one, at least `quietMs` after it, came with no event in between.
 */
export class StreamProgress {
  /** Requests sent and not answered yet, oldest first, with the creates sent before each. */
  private asked: { covers: number; at: number }[] = [];
  private lastAskAt = -Infinity;
  /** Responses carrying events received on the stream. */
  private eventsSeen = 0;
  private candidate: (StreamProgressFact & { eventsSeen: number }) | null = null;

  constructor(private trust: ProgressTrust) {}

  trusted(trust: ProgressTrust): void {
    this.trust = trust;
  }

  catchUpMs(): number {
    return this.trust.kind === 'quiet' ? this.trust.catchUpMs : 0;
  }

  /** Events came on the stream: an older etcd's answer before them may have overtaken them. */
  events(): void {
    this.eventsSeen += 1;
  }

  /** Whether to send a progress request now, after `creates` creates were sent on the stream. */
  ask(creates: number, now: number): boolean {
    const last = this.asked[this.asked.length - 1];
    if (last !== undefined && now - last.at < ANSWER_LOST_MS) return false;
    const gap = this.trust.kind === 'quiet' ? Math.max(ASK_GAP_MS, this.trust.quietMs) : ASK_GAP_MS;
    if (now - this.lastAskAt < gap) return false;
    if (this.asked.length >= MAX_ASKED) this.asked.shift();
    this.asked.push({ covers: creates, at: now });
    this.lastAskAt = now;
    return true;
  }

  /**
   * etcd's answer to a progress request: what may be believed of it (null:
   * nothing yet). It is taken as the answer to the oldest request still
   * unanswered, which claims the fewest watches: etcd 3.5.13+ answers
   * several requests made while it defers with one message.
   */
  answered(revision: number, now: number): StreamProgressFact | null {
    const first = this.asked[0];
    this.asked = [];
    if (first === undefined) return null; // not asked (or taken as lost): nothing to say which watches it covers
    const answer = { revision, covers: first.covers, at: now, askedAt: first.at, quiet: this.trust.kind === 'quiet', eventsSeen: this.eventsSeen };
    if (this.trust.kind === 'reliable') return answer;
    const candidate = this.candidate;
    if (candidate !== null && candidate.eventsSeen === this.eventsSeen && now - candidate.at >= this.trust.quietMs) {
      this.candidate = answer;
      return candidate;
    }
    // A candidate stays one until an event comes after it.
    if (candidate === null || candidate.eventsSeen !== this.eventsSeen) this.candidate = answer;
    return null;
  }
}
