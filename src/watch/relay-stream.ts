import { status, type ClientDuplexStream, type Metadata } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { etcdMethod } from '../etcd/proto';
import type { WireWatchResponse } from '../etcd/wire';
import type { UpstreamMember } from '../upstream/pool';
import type { WireWatchCreateRequest } from './watch-spec';
import { reasonedCall } from '../upstream/call-reason';

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
  /** etcd's ID for the watch, once it answered the create. */
  upstreamId: string | null;
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

  private constructor(
    private readonly stream: ClientDuplexStream<object, WireWatchResponse>,
    private readonly hooks: RelayStreamHooks,
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
    return new RelayStream(stream, hooks);
  }

  /** Asks etcd for one watch; the returned function cancels it (before or after etcd answered). */
  create(listener: UpstreamWatchListener, request: WireWatchCreateRequest): () => void {
    const slot: Slot = { listener, upstreamId: null, cancelled: false };
    this.pending.push(slot);
    // Upstream IDs are etcd's to choose; each downstream watch keeps its own on its own stream.
    this.stream.write({ create_request: { ...request, watch_id: '0' } });
    return () => this.cancel(slot);
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
        this.live.set(id, slot);
      }
      slot.listener.received(response);
      if (response.canceled === true) this.closeIfIdle();
      return;
    }
    // Unknown: a watch cancelled here, or a progress reply (watch ID -1) nobody on this stream asked for.
    const slot = this.live.get(id);
    if (slot === undefined) return;
    if (response.canceled === true) this.live.delete(id);
    slot.listener.received(response);
    if (response.canceled === true) this.closeIfIdle();
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
