import { status, type ClientDuplexStream, type Metadata } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { etcdMethod } from '../etcd/proto';
import type { WireWatchResponse } from '../etcd/wire';
import type { UpstreamMember } from '../upstream/pool';
import type { WireWatchCreateRequest } from './watch-spec';
import { reasonedCall } from '../upstream/call-reason';
import { callUpstream } from '../upstream/unary';
import { progressTrustFor } from '../mirror/watch-stream';
import { StreamProgress } from './relay-progress';

/** How long the member's Status (its version: whether its progress answers can be believed) may take. */
const STATUS_DEADLINE_MS = 2_000;

/** What one upstream watch on a relay stream reports to. */
export interface UpstreamWatchListener {
  /** etcd's created answer, then its events, progress notifications and cancel for this watch. */
  received(response: WireWatchResponse): void;
  /**
   * The stream failed: the watch is gone without etcd having cancelled it.
   * `resumable`: the failure is one etcd's own client rides out by watching
   * again (the connection or the member went away), not one it ends the watch
   * for (etcd ended a require-leader stream for want of a leader, or refused it).
   */
  broken(reason: string, resumable: boolean): void;
  /**
   * etcd answered a progress request on the stream, sent at `askedAt`
   * (performance.now()) after this watch was made: it has sent every event
   * up to `revision` (nothing is sent to the client for it; a progress
   * request waiting on the watch may use it).
   */
  caughtUp(revision: number, askedAt: number): void;
}

export interface RelayStreamHooks {
  /** Every header revision etcd sends on the stream: a revision the cluster has reached. */
  readonly seen: (revision: number) => void;
  /** The stream ended (failed, or closed because no watch was left): the next watch needs a new one. */
  readonly closed: () => void;
  readonly count: (delta: number) => void;
}

interface Slot {
  readonly listener: UpstreamWatchListener;
  /** Creates sent on the stream up to this one's: a progress request sent after covers it. */
  readonly seq: number;
  /** The revision it was asked from (0: now). */
  readonly startRevision: number;
  /** etcd's ID for the watch, once it answered the create. */
  upstreamId: string | null;
  /** When an older etcd has had time to send what it missed (only from then on can its progress answers count for it). */
  caughtUpBy: number;
  cancelled: boolean;
}

/**
 * Whether etcd's client would watch again after its stream failed so: it does
 * for a connection lost or a member going away (Unavailable, Internal), not
 * for etcd ending a require-leader stream without a leader, nor for any other
 * status (the request itself was refused).
 */
function resumableFailure(code: number | undefined, details: string): boolean {
  if (code !== status.UNAVAILABLE && code !== status.INTERNAL) return false;
  return !details.includes(ETCD_ERRORS.noLeader.details);
}

/**
 * One upstream Watch stream carrying many upstream watches, as etcd
 * multiplexes them: creates are answered in the order sent, so each created
 * answer belongs to the oldest unanswered create, and later responses are
 * routed by the watch ID it names. Once no watch is left the stream is
 * closed, so etcd holds no idle stream for the proxy.
 */
export class RelayStream {
  /** Creates sent and not answered yet, in order. */
  private readonly pending: Slot[] = [];
  private readonly live = new Map<string, Slot>();
  private ended = false;
  private createsSent = 0;
  /** Its progress requests to etcd; believed as far as the member's version allows (unknown: as little as the oldest). */
  private readonly progress = new StreamProgress(progressTrustFor(undefined));
  private versionAsked = false;

  private constructor(
    private readonly stream: ClientDuplexStream<object, WireWatchResponse>,
    private readonly hooks: RelayStreamHooks,
    /** The member's version, as its Status reports it. */
    private readonly version: () => Promise<string | undefined>,
  ) {
    hooks.count(1);
    stream.on('data', (response: WireWatchResponse) => this.received(response));
    stream.on('error', (error: Error & { code?: number; details?: string }) => {
      const details = error.details ?? error.message;
      this.fail(`etcd-cache-proxy: upstream watch stream failed: ${details}`, resumableFailure(error.code, details));
    });
    stream.on('end', () => this.fail('etcd-cache-proxy: upstream ended the watch stream', true));
  }

  static open(member: UpstreamMember, metadata: Metadata, hooks: RelayStreamHooks): RelayStream {
    const watch = etcdMethod('etcdserverpb.Watch', 'Watch');
    const stream = member.client.makeBidiStreamRequest(watch.path, watch.requestSerialize, watch.responseDeserialize, metadata, reasonedCall('client')) as ClientDuplexStream<
      object,
      WireWatchResponse
    >;
    const version = async (): Promise<string | undefined> => {
      // Asked on behalf of a client's progress request, so counted as the client's.
      const answer = await callUpstream<{ version?: string }>(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: STATUS_DEADLINE_MS, reason: 'client' });
      return answer.version;
    };
    return new RelayStream(stream, hooks, version);
  }

  /** Asks etcd for one watch; the returned function cancels it (before or after etcd answered). */
  create(listener: UpstreamWatchListener, request: WireWatchCreateRequest): () => void {
    this.createsSent += 1;
    const slot: Slot = { listener, seq: this.createsSent, startRevision: Number(request.start_revision ?? '0'), upstreamId: null, caughtUpBy: Infinity, cancelled: false };
    this.pending.push(slot);
    // Upstream IDs are etcd's to choose; each downstream watch keeps its own on its own stream.
    this.stream.write({ create_request: { ...request, watch_id: '0' } });
    return () => this.cancel(slot);
  }

  /**
   * A client waits for progress on a watch of this stream: etcd is asked
   * (at most one request in flight, shared by every watch and client) and
   * its answer reaches the watches it speaks for, by caughtUp.
   */
  askProgress(): void {
    if (this.ended || this.live.size === 0) return;
    if (!this.versionAsked) {
      this.versionAsked = true;
      // Until the version is known its answers are believed as an old etcd's: later, not wrongly.
      void this.version().then(
        (version) => this.progress.trusted(progressTrustFor(version)),
        () => undefined,
      );
    }
    if (this.progress.ask(this.createsSent, performance.now())) this.stream.write({ progress_request: {} });
  }

  private cancel(slot: Slot): void {
    if (slot.cancelled || this.ended) return;
    slot.cancelled = true;
    if (slot.upstreamId !== null && this.live.delete(slot.upstreamId)) this.stream.write({ cancel_request: { watch_id: slot.upstreamId } });
    // A pending slot stays in place: its created answer is still coming and must not be taken for the next one's.
    this.closeIfIdle();
  }

  private received(response: WireWatchResponse): void {
    const revision = Number(response.header?.revision ?? '0');
    if (revision > 0) this.hooks.seen(revision);
    const id = response.watch_id ?? '0';
    if ((response.events ?? []).length > 0) this.progress.events();
    if (response.created === true) {
      const slot = this.pending.shift();
      if (slot === undefined) return;
      if (slot.cancelled) {
        // Cancelled before etcd answered: cancel it upstream too.
        if (response.canceled !== true) this.stream.write({ cancel_request: { watch_id: id } });
        this.closeIfIdle();
        return;
      }
      if (response.canceled !== true) {
        slot.upstreamId = id;
        slot.caughtUpBy = this.catchUpDeadline(slot, revision);
        this.live.set(id, slot);
      }
      slot.listener.received(response);
      if (response.canceled === true) this.closeIfIdle();
      return;
    }
    if (id === '-1' && response.canceled !== true) {
      this.progressAnswered(revision);
      return;
    }
    // Unknown: a watch cancelled here.
    const slot = this.live.get(id);
    if (slot === undefined) return;
    if (response.canceled === true) this.live.delete(id);
    slot.listener.received(response);
    if (response.canceled === true) this.closeIfIdle();
  }

  /**
   * When an older etcd has sent a watch made at `createdRevision` what it
   * missed: it catches up 1 000 revisions every 100 ms, without a word for a
   * range that has none.
   */
  private catchUpDeadline(slot: Slot, createdRevision: number): number {
    const behind = slot.startRevision > 0 ? Math.max(0, createdRevision - slot.startRevision + 1) : 0;
    return performance.now() + this.progress.catchUpMs() + (behind > 0 ? 100 * Math.ceil(behind / 1_000) : 0);
  }

  /** etcd's answer to a progress request (watch ID -1): to the watches it speaks for, if it can be believed. */
  private progressAnswered(revision: number): void {
    const fact = this.progress.answered(revision, performance.now());
    if (fact === null) return;
    for (const slot of [...this.live.values()]) {
      if (slot.cancelled || slot.seq > fact.covers || (fact.quiet && slot.caughtUpBy > fact.at)) continue;
      slot.listener.caughtUp(fact.revision, fact.askedAt);
    }
  }

  private closeIfIdle(): void {
    if (this.ended || this.live.size > 0 || this.pending.some((slot) => !slot.cancelled)) return;
    this.end();
    this.stream.cancel();
  }

  private fail(reason: string, resumable: boolean): void {
    if (this.ended) return;
    const listeners = [...this.live.values(), ...this.pending].filter((slot) => !slot.cancelled).map((slot) => slot.listener);
    this.end();
    for (const listener of listeners) listener.broken(reason, resumable);
  }

  private end(): void {
    this.ended = true;
    this.live.clear();
    this.pending.length = 0;
    this.hooks.count(-1);
    this.hooks.closed();
  }
}
