import type { KeepAliveDownstream, Slot } from './keepalive-downstream';
import { STALL_CHECK_MS, STALL_MS } from './keepalive-upstream';

/** A renewal of one lease, under way upstream or held for a leader, with everyone waiting for it. */
export interface Renewal {
  /** The lease. */
  readonly id: string;
  /** The first asker's bytes, sent as they came (fields a newer client adds survive). */
  readonly request: Buffer;
  /** Every downstream request this renewal answers; a stream that ends takes its own out. */
  waiters: Slot[];
  /** How many upstream streams it was written to. */
  sends: number;
  /** When it was last sent, or held. */
  sentAt: number;
}

/**
 * The renewals under way, at most one per lease: a request for a lease whose
 * renewal is already in flight (or held) waits for that one's answer, which
 * fans out to every waiter. So what is kept here is bounded by the number of
 * distinct leases.
 */
export class Renewals {
  /** Renewals on the current upstream stream, in the order they were sent. */
  private readonly inFlight = new Map<string, Renewal>();
  /**
   * Renewals held while no member has a leader (one still answers): etcd
   * holds a renewal until a leader exists, or its request timeout, so the
   * proxy holds it too rather than end the stream; sent once a leader is back.
   */
  private readonly held = new Map<string, Renewal>();
  private holdTimer: NodeJS.Timeout | undefined;

  /** `expired`: held renewals that waited STALL_MS for a leader, taken out; their streams end as etcd's would. */
  constructor(private readonly expired: (renewals: Renewal[]) => void) {}

  /** The renewal of this lease already under way, which a new request joins. */
  pending(id: string): Renewal | undefined {
    return this.inFlight.get(id) ?? this.held.get(id);
  }

  /** The renewal was written to the current upstream stream. */
  sent(renewal: Renewal): void {
    renewal.sends += 1;
    renewal.sentAt = Date.now();
    this.inFlight.set(renewal.id, renewal);
  }

  /**
   * etcd answered lease `id`: every request waiting for that renewal gets the
   * same answer. Returns the streams to write it to, or null when no renewal
   * in flight matches.
   */
  answered(id: string | null, answer: Buffer): Set<KeepAliveDownstream> | null {
    const renewal = id === null ? undefined : this.inFlight.get(id);
    if (renewal === undefined) return null;
    this.inFlight.delete(renewal.id);
    for (const slot of renewal.waiters) slot.answer = answer;
    return new Set(renewal.waiters.map((slot) => slot.downstream));
  }

  /** The oldest renewal still unanswered on the current stream. */
  oldestInFlight(): Renewal | undefined {
    return this.inFlight.values().next().value;
  }

  /** The current stream is gone: what it carried that someone still waits for, now on no stream. */
  takeInFlight(): Renewal[] {
    const carried = [...this.inFlight.values()].filter((renewal) => renewal.waiters.length > 0);
    this.inFlight.clear();
    return carried;
  }

  /** The current stream was closed on purpose: nobody is owed what it carried. */
  dropInFlight(): void {
    this.inFlight.clear();
  }

  hold(renewal: Renewal): void {
    renewal.sentAt = Date.now();
    this.held.set(renewal.id, renewal);
    if (this.holdTimer !== undefined) return;
    this.holdTimer = setInterval(() => this.expireHeld(), STALL_CHECK_MS);
    this.holdTimer.unref();
  }

  /** A leader is back: the held renewals someone still waits for, taken out to be sent. */
  takeHeld(): Renewal[] {
    const held = [...this.held.values()].filter((renewal) => renewal.waiters.length > 0);
    this.dropHeld();
    return held;
  }

  dropHeld(): void {
    this.held.clear();
    this.stopHoldTimerIfIdle();
  }

  /** A downstream stream ended: the renewals it waited for no longer answer it. */
  forget(downstream: KeepAliveDownstream): void {
    for (const slot of downstream.owed) {
      const renewal = this.pending(slot.id);
      if (renewal !== undefined) renewal.waiters = renewal.waiters.filter((waiter) => waiter.downstream !== downstream);
    }
  }

  /** Like etcd's request timeout: a renewal that waited this long for a leader ends its streams with etcd's words. */
  private expireHeld(): void {
    const expired = [...this.held.values()].filter((renewal) => Date.now() - renewal.sentAt >= STALL_MS);
    for (const renewal of expired) this.held.delete(renewal.id);
    this.stopHoldTimerIfIdle();
    this.expired(expired);
  }

  private stopHoldTimerIfIdle(): void {
    if (this.held.size > 0 || this.holdTimer === undefined) return;
    clearInterval(this.holdTimer);
    this.holdTimer = undefined;
  }
}
