import type { WireHeader, WireWatchResponse } from '../etcd/wire';
import { memberResponses, modRevision } from './relay-fanout';

/** One downstream watch relayed through a shared upstream watch. */
export interface RelayMember {
  /** A response for this watch; its watch_id is the upstream one, the caller's to translate. */
  deliver(response: WireWatchResponse): void;
  /** The upstream watch is gone without etcd cancelling it (its stream failed). */
  broken(reason: string): void;
  /** etcd answered a progress request for it (see RelayHandle.caughtUp): a progress request waiting on it may go out now. */
  caughtUp?(): void;
}

export interface RelayHandle {
  /** The downstream watch is cancelled: it leaves the shared watch (idempotent). */
  cancel(): void;
  /** The revision it has been sent every event up to, by its events and its start (-1: not answered yet). */
  through(): number;
  /**
   * What etcd's last answer to a progress request on the upstream stream
   * said of it: every event up to `revision` sent, and when that request was
   * sent (performance.now(); etcd's revision then was at most `revision`).
   * Null: none yet.
   */
  caughtUp(): { readonly revision: number; readonly askedAt: number } | null;
  /** Someone waits to know it caught up: etcd is asked for progress on its stream. */
  askProgress(): void;
}

interface Member {
  readonly sink: RelayMember;
  /** start_revision asked for; 0 is "from now", fixed when the member is answered. */
  readonly requested: number;
  /** First revision whose events it is sent; null until its created answer went out. */
  start: number | null;
  /** Highest header revision it was shown: what it is sent never names a lower one. */
  shown: number;
}

/**
 * One upstream watch and every downstream watch it serves. The upstream
 * watch sends every event from `from` on, and has sent those up to
 * `delivered`. A downstream watch that wants events from S may join while
 * from <= S and delivered < S: it then gets exactly the events from S on,
 * which is what its own upstream watch would have sent. "From now" is
 * S = R + 1 for R the highest revision known to exist, so the created
 * revision it is shown never goes below one the client may have seen, and
 * no event at or below it follows (etcd's promise for a watch from now).
 */
export class SharedWatch {
  private readonly members = new Set<Member>();
  /** Null until etcd answers a create from now (then its created revision + 1). */
  private from: number | null;
  private delivered: number;
  private created = false;
  private header: WireHeader = {};
  /**
   * The revision etcd's answers to progress requests on the stream say the
   * upstream watch sent every event up to, and when the last such request
   * was sent (performance.now()). Kept apart from `delivered`, which decides
   * where a resumed watch starts: an older etcd's answers are believed by a
   * rule of thumb, good enough for a progress answer, not for skipping events.
   */
  private caughtUpThrough = 0;
  private caughtUpAskedAt = -Infinity;
  /** Fragments of one upstream response, held until its last so every member gets it whole. */
  private fragments: WireWatchResponse[] = [];
  private ended = false;

  constructor(
    private readonly startRevision: number,
    private readonly fragment: boolean,
    /** The highest revision the cluster is known to have reached (never lower than any header this watch received). */
    private readonly knownRevision: () => number,
    /** Called once when the watch ends: `lastLeft` when its members all left (so it is still open upstream). */
    private readonly onEnd: (lastLeft: boolean) => void,
    /** Asks etcd for progress on the stream its upstream watch is on. */
    private readonly askProgress: () => void = () => undefined,
  ) {
    this.from = startRevision > 0 ? startRevision : null;
    this.delivered = startRevision > 0 ? startRevision - 1 : 0;
  }

  /** Adds a member if the revisions allow it (see the class comment); null: it needs an upstream watch of its own. */
  join(requested: number, sink: RelayMember): RelayHandle | null {
    if (this.ended || !this.mayJoin(requested)) return null;
    const member: Member = { sink, requested, start: null, shown: 0 };
    this.members.add(member);
    // Before etcd answered, every member waits for that answer (which may be a refusal).
    if (this.created) this.answer(member);
    return { cancel: () => this.leave(member), through: () => this.through(member), caughtUp: () => this.caughtUpAnswer(member), askProgress: () => this.askProgress() };
  }

  /**
   * A member has every event it is owed up to what the upstream watch
   * delivered; a member from a later start is owed none before its start.
   */
  private through(member: Member): number {
    if (member.start === null) return -1;
    return Math.max(member.start - 1, this.delivered);
  }

  private caughtUpAnswer(member: Member): { revision: number; askedAt: number } | null {
    if (member.start === null || this.caughtUpAskedAt === -Infinity) return null;
    return { revision: this.caughtUpThrough, askedAt: this.caughtUpAskedAt };
  }

  private mayJoin(requested: number): boolean {
    // From now is right after the highest revision known to exist: a header may only name a revision the cluster reached.
    const wanted = requested === 0 ? this.knownRevision() + 1 : requested;
    if (this.created) return this.from !== null && this.from <= wanted && this.delivered < wanted;
    // Before etcd answers a create from now its `from` is unknown, but a member from now can take etcd's answer as its own.
    if (this.startRevision === 0) return requested === 0;
    return this.startRevision <= wanted;
  }

  /** The member's created answer, with the header of this watch's own. */
  private answer(member: Member): void {
    // Known revisions only grow, and cover every header this watch received: still >= delivered and >= from - 1 for a member from now.
    const revision = this.knownRevision();
    member.start = member.requested === 0 ? revision + 1 : member.requested;
    member.shown = revision;
    member.sink.deliver({ header: { ...this.header, revision: String(revision) }, created: true });
  }

  private leave(member: Member): void {
    if (!this.members.delete(member) || this.members.size > 0 || this.ended) return;
    this.ended = true;
    this.onEnd(true);
  }

  /** etcd's answers for the upstream watch, in order (its created answer, events, progress, cancel). */
  received(response: WireWatchResponse): void {
    if (this.ended) return;
    if (response.created === true) this.createdUpstream(response);
    else if (response.canceled === true) this.cancelledUpstream(response);
    else if (response.fragment === true) this.fragments.push(response);
    else this.completed([...this.fragments, response]);
  }

  /**
   * etcd said, answering a progress request on the stream, that the upstream
   * watch has sent every event up to `revision`: no member is told (etcd
   * answers the stream, not a watch), but a progress request waiting on
   * them may use it (their caughtUp()).
   */
  caughtUp(revision: number, askedAt: number): void {
    // Half a fragmented revision in: the answer cannot be past it (etcd sends a revision's fragments together).
    if (this.ended || !this.created || this.fragments.length > 0) return;
    this.caughtUpThrough = Math.max(this.caughtUpThrough, revision);
    this.caughtUpAskedAt = Math.max(this.caughtUpAskedAt, askedAt);
    for (const member of this.members) if (member.start !== null) member.sink.caughtUp?.();
  }

  /** Whether it still has members (it ends when the last leaves, or on fail or etcd's cancel). */
  open(): boolean {
    return !this.ended;
  }

  /** Its upstream watch is gone; the one that resumes it starts at resumeRevision(). */
  upstreamLost(): void {
    // A revision cut short between fragments comes again whole from the watch that resumes it.
    this.fragments = [];
  }

  /** Ends the watch for every member, as gone without etcd cancelling it. */
  fail(reason: string): void {
    if (this.ended) return;
    const members = this.end();
    for (const member of members) member.sink.broken(reason);
  }

  /**
   * Where a new upstream watch takes over without a gap or a repeat: right
   * after the last revision whose events are all out (0, from now, while no
   * member was answered yet).
   */
  resumeRevision(): number {
    if (!this.created) return this.startRevision;
    return this.delivered + 1;
  }

  private createdUpstream(response: WireWatchResponse): void {
    if (response.canceled === true) {
      this.cancelledUpstream(this.created ? { ...response, created: false } : response);
      return;
    }
    // A resumed watch: its members were answered by the first one, and its events carry on from resumeRevision().
    if (this.created) return;
    const revision = Number(response.header?.revision ?? '0');
    this.created = true;
    this.header = response.header ?? {};
    if (this.startRevision === 0) {
      // etcd's watch from now starts right after the revision its created answer names.
      this.from = revision + 1;
      this.delivered = revision;
    }
    for (const member of [...this.members]) if (this.members.has(member)) this.answer(member);
  }

  /** etcd ended the watch (compacted, or refused the create): every member is told, in etcd's words. */
  private cancelledUpstream(response: WireWatchResponse): void {
    const members = this.end();
    for (const member of members) member.sink.deliver(response);
  }

  private completed(parts: WireWatchResponse[]): void {
    this.fragments = [];
    const events = parts.flatMap((part) => part.events ?? []);
    if (events.length === 0) {
      this.progress(parts[parts.length - 1] ?? {});
      return;
    }
    // etcd sends a revision's events in one response, in revision order: all up to the last one are out now.
    this.delivered = Math.max(this.delivered, modRevision(events[events.length - 1] ?? {}));
    for (const member of [...this.members]) {
      if (!this.members.has(member) || member.start === null) continue;
      for (const part of memberResponses(parts, member.start, this.fragment)) {
        const revision = Math.max(Number(part.header?.revision ?? '0'), member.shown);
        member.shown = revision;
        member.sink.deliver({ ...part, header: { ...part.header, revision: String(revision) } });
        // A member may be cancelled by its own delivery (its client too slow).
        if (!this.members.has(member)) break;
      }
    }
  }

  /**
   * A progress notification: every event up to its revision has been sent.
   * A member shown a higher revision already skips it, since raising it would
   * promise events this watch may still be sending.
   */
  private progress(response: WireWatchResponse): void {
    const revision = Number(response.header?.revision ?? '0');
    this.delivered = Math.max(this.delivered, revision);
    for (const member of [...this.members]) {
      if (!this.members.has(member) || member.start === null || revision < member.shown) continue;
      member.shown = revision;
      member.sink.deliver(response);
    }
  }

  private end(): Member[] {
    const members = [...this.members];
    this.members.clear();
    this.ended = true;
    this.onEnd(false);
    return members;
  }
}
