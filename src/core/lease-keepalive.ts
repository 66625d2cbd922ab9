import {
  Metadata,
  status,
  type ClientDuplexStream,
  type StatusObject,
} from '@grpc/grpc-js';
import type { Source } from '../metrics';
import type { DuplexCall, DuplexHandler } from './call';
import type { UpstreamMember } from '../upstream/pool';
import type { CoreContext } from './context';
import { ProxyError, statusName, toStatus } from '../etcd/errors';
import { forwardBidi, observeCall, type RpcRef } from './forward';
import { rpcRef } from './forwarding-service';
import { etcdMethod, passBytes } from '../etcd/proto';
import { reasonedCall } from '../upstream/call-reason';

const SERVICE = 'etcdserverpb.Lease';
const METHOD = 'LeaseKeepAlive';

/**
 * How long the shared upstream stream outlives its last downstream stream:
 * clients that keep-alive with one short stream per renewal (etcd3's
 * keepaliveOnce) would otherwise open and close it every time.
 */
export const IDLE_CLOSE_MS = 2_000;

/**
 * A renewal unanswered this long means the shared stream is stuck (etcd
 * answers each one in well under its own request timeout, 7 s by default).
 * Losing the upstream fails waiters sooner (docs/design.md, "Writes"); this only
 * bounds what liveness cannot see, such as a member that answers probes but
 * not renewals.
 */
export const STALL_MS = 10_000;
const STALL_CHECK_MS = 1_000;

/**
 * A renewal the shared stream carried when it broke is sent once more on a
 * new stream (to the next healthy member), then fails its waiters with
 * UNAVAILABLE. Retrying is safe where it is not for a Put: a second renewal
 * only moves the expiry to what the client asked for anyway. And it is what
 * clients handle best: etcd3 re-opens a failed keep-alive stream after
 * 100 ms and clientv3 after 500 ms, both resending every lease; failing at
 * the first break would turn one member's failure into every client
 * reconnecting at once, whereas one retry hides a failover completely. One
 * retry, not more, so that a dead upstream is reported at once.
 */
const MAX_SENDS = 2;

/** What etcd ends a keep-alive stream with when a renewal waited its request timeout for a leader. */
const NO_LEADER = 'etcdserver: no leader';

/** etcd's answer to bytes that are no LeaseKeepAliveRequest (grpc-go's unmarshal error, without its parser detail). */
const UNMARSHAL_ERROR = 'grpc: failed to unmarshal the received message';

type DownstreamCall = DuplexCall;

/** One downstream LeaseKeepAlive stream and the answers it is owed, in the order it asked. */
interface Downstream {
  readonly call: DownstreamCall;
  readonly owed: Slot[];
  halfClosed: boolean;
  finished: boolean;
  waitingForDrain: boolean;
  untrack: () => void;
  /** A require-leader stream stops following the leader sentinel. */
  unfollowLeader: () => void;
}

/** One request of one downstream stream, until its answer has been written. */
interface Slot {
  readonly id: string;
  readonly downstream: Downstream;
  answer: Buffer | null;
}

/** A renewal sent upstream and not yet answered, with everyone waiting for it. */
interface InFlight {
  readonly id: string;
  /** The first asker's bytes, sent as they came (fields a newer client adds survive). */
  readonly request: Buffer;
  waiters: Slot[];
  sends: number;
  sentAt: number;
}

interface Upstream {
  readonly call: ClientDuplexStream<Buffer, Buffer>;
  readonly member: UpstreamMember;
  readonly stallTimer: NodeJS.Timeout;
}

type IdReader = (message: Buffer) => string | null;

function idReader(decode: (message: Buffer) => object): IdReader {
  return (message) => {
    try {
      // proto3 leaves a zero ID off the wire; etcd reads it as lease 0.
      return (decode(message) as { ID?: string }).ID ?? '0';
    } catch {
      return null;
    }
  };
}

function noLeaderStatus(): StatusObject {
  return { code: status.UNAVAILABLE, details: NO_LEADER, metadata: new Metadata() };
}

function okStatus(): StatusObject {
  return { code: status.OK, details: 'OK', metadata: new Metadata() };
}

/**
 * The shared stream asks etcd to refuse it while its member has no leader: a
 * renewal there would only wait out etcd's request timeout, and the refusal
 * sends the retry to another member at once.
 */
function requireLeader(): Metadata {
  const metadata = new Metadata();
  metadata.set('hasleader', 'true');
  return metadata;
}

/**
 * Serves every downstream LeaseKeepAlive stream of one proxy over a single
 * upstream stream. A renewal of lease X while one for X is already on its
 * way upstream is not sent again: its asker gets that renewal's answer
 * (same header, ID and TTL), as clientv3 itself shares one renewal between
 * all the callers keeping one lease alive. Each downstream stream still gets
 * one answer per request, in the order it asked, as etcd answers a stream.
 * In flight is bounded by the number of distinct leases, since each has at
 * most one renewal upstream.
 */
export class SharedKeepAlive {
  private readonly downstreams = new Set<Downstream>();
  /** Renewals on the current upstream stream, in the order they were sent. */
  private readonly inFlight = new Map<string, InFlight>();
  /**
   * Renewals held while no member has a leader (one still answers): etcd
   * holds a renewal until a leader exists, or its request timeout, so the
   * proxy holds it too rather than end the stream; sent once a leader is back.
   */
  private readonly held = new Map<string, InFlight>();
  private holdTimer: NodeJS.Timeout | undefined;
  private upstream: Upstream | null = null;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly labels: { service: string; method: string };
  private readonly requestId: IdReader;
  private readonly answerId: IdReader;

  constructor(
    private readonly ctx: CoreContext,
    private readonly rpc: RpcRef,
  ) {
    this.labels = { service: rpc.service, method: rpc.method };
    const method = etcdMethod(SERVICE, METHOD);
    this.requestId = idReader(method.requestDeserialize);
    this.answerId = idReader(method.responseDeserialize);
    ctx.mirrorReads?.liveness.on('silent', () => this.upstreamLost());
    ctx.pool.on('unhealthy', () => this.leaderLost());
    ctx.pool.on('healthy', () => this.releaseHeld());
  }

  /** No member has a leader, and one still answers (as the probes found): renewals are held, streams stay open. */
  private leaderless(): boolean {
    const members = this.ctx.pool.members();
    return !members.some((m) => this.ctx.pool.health(m) === 'healthy') && members.some((m) => this.ctx.pool.health(m) === 'leaderless');
  }

  /** The refusal a keep-alive gets now, if any: read-only mode, or an upstream that does not answer at all. */
  private refusal(): ProxyError | null {
    if (this.ctx.mode() !== 'readonly' && this.leaderless()) return null;
    return this.ctx.writes.admit();
  }

  /** Takes one downstream stream, refused as the forwarding path refuses a write stream. */
  serve(call: DownstreamCall): void {
    const refusal = this.refusal();
    if (refusal !== null) {
      observeCall(this.ctx, this.rpc, refusal.code, null, 'proxy');
      call.emit('error', toStatus(refusal));
      return;
    }
    // etcd ends a require-leader stream when its member has had no leader for a few election timeouts,
    // and refuses one then; the sentinel says when etcd does.
    const requireLeader = call.metadata.get('hasleader')[0] === 'true';
    if (requireLeader && this.ctx.leader.noLeader()) {
      observeCall(this.ctx, this.rpc, status.UNAVAILABLE, null, 'proxy');
      call.emit('error', noLeaderStatus());
      return;
    }
    const downstream: Downstream = { call, owed: [], halfClosed: false, finished: false, waitingForDrain: false, untrack: () => undefined, unfollowLeader: () => undefined };
    downstream.untrack = this.ctx.streams.add((shutdown) => this.shutdown(downstream, shutdown));
    if (requireLeader) {
      const onNoLeader = (): void => this.finish(downstream, noLeaderStatus(), 'proxy');
      this.ctx.leader.on('noLeader', onNoLeader);
      const release = this.ctx.leader.acquire();
      downstream.unfollowLeader = () => {
        this.ctx.leader.off('noLeader', onNoLeader);
        release();
      };
    }
    this.downstreams.add(downstream);
    clearTimeout(this.idleTimer);
    this.ctx.metrics.grpcStreamsOpen.inc(this.labels);
    call.on('data', (message: Buffer) => this.receive(downstream, message));
    call.on('end', () => {
      downstream.halfClosed = true;
      this.deliver(downstream);
    });
    call.on('cancelled', () => this.release(downstream, status.CANCELLED, 'upstream'));
    call.on('error', () => this.release(downstream, status.CANCELLED, 'upstream'));
  }

  private receive(downstream: Downstream, message: Buffer): void {
    if (downstream.finished) return;
    const id = this.requestId(message);
    if (id === null) {
      this.finish(downstream, { code: status.INTERNAL, details: UNMARSHAL_ERROR, metadata: new Metadata() }, 'proxy');
      return;
    }
    // Asked per request, not only when the stream opened: a stream outlives outages.
    const refusal = this.refusal();
    if (refusal !== null) {
      this.finish(downstream, toStatus(refusal), 'proxy');
      return;
    }
    const slot: Slot = { id, downstream, answer: null };
    downstream.owed.push(slot);
    const pending = this.inFlight.get(id) ?? this.held.get(id);
    if (pending !== undefined) {
      pending.waiters.push(slot);
      this.ctx.metrics.leaseKeepAlivesCoalesced.inc();
      return;
    }
    this.send({ id, request: message, waiters: [slot], sends: 0, sentAt: 0 });
  }

  private send(pending: InFlight): void {
    if (this.leaderless()) {
      this.hold(pending);
      return;
    }
    const upstream = this.upstream ?? this.open();
    if (upstream === null) {
      this.fail([pending], toStatus(new ProxyError('noUpstream')));
      return;
    }
    pending.sends += 1;
    pending.sentAt = Date.now();
    this.inFlight.set(pending.id, pending);
    // No backpressure needed: at most one small message per distinct lease is outstanding.
    upstream.call.write(pending.request);
  }

  private open(): Upstream | null {
    const member = this.ctx.pool.candidates()[0];
    if (member === undefined) return null;
    let call: ClientDuplexStream<Buffer, Buffer>;
    try {
      call = member.client.makeBidiStreamRequest(this.rpc.path, passBytes, passBytes, requireLeader(), reasonedCall('client'));
    } catch (error) {
      // grpc-js throws on a closed channel: only while the proxy stops.
      this.ctx.log.warn({ member: member.endpoint.url, err: error }, 'upstream keep-alive stream could not be opened');
      return null;
    }
    const upstream: Upstream = { call, member, stallTimer: setInterval(() => this.checkStall(upstream), STALL_CHECK_MS) };
    upstream.stallTimer.unref();
    this.upstream = upstream;
    this.ctx.metrics.leaseKeepAliveUpstreamStreams.inc();
    call.on('data', (answer: Buffer) => {
      if (this.upstream === upstream) this.answer(answer);
    });
    // Every end, error or not, also arrives as 'status', handled there.
    call.on('error', () => undefined);
    call.on('status', (final: StatusObject) => this.upstreamEnded(upstream, final));
    return upstream;
  }

  private answer(message: Buffer): void {
    const id = this.answerId(message);
    const pending = id === null ? undefined : this.inFlight.get(id);
    if (pending === undefined) {
      this.ctx.log.warn({ lease: id }, 'upstream keep-alive answer matches no renewal in flight; dropped');
      return;
    }
    this.inFlight.delete(pending.id);
    for (const slot of pending.waiters) slot.answer = message;
    for (const downstream of new Set(pending.waiters.map((slot) => slot.downstream))) this.deliver(downstream);
  }

  /** Writes the answers at the head of the stream's queue; one still pending holds back those behind it. */
  private deliver(downstream: Downstream): void {
    if (downstream.finished) return;
    for (let head = downstream.owed[0]; head !== undefined && head.answer !== null; head = downstream.owed[0]) {
      downstream.owed.shift();
      this.write(downstream, head.answer);
    }
    // etcd ends a half-closed stream once it has answered everything before the close.
    if (downstream.halfClosed && downstream.owed.length === 0) this.finish(downstream, okStatus(), 'upstream');
  }

  private write(downstream: Downstream, answer: Buffer): void {
    if (downstream.call.write(answer) || downstream.waitingForDrain) return;
    // A client that does not read stops being read from, so what it is owed stays bounded.
    downstream.waitingForDrain = true;
    downstream.call.pause();
    downstream.call.once('drain', () => {
      downstream.waitingForDrain = false;
      downstream.call.resume();
    });
  }

  private upstreamEnded(upstream: Upstream, final: StatusObject): void {
    clearInterval(upstream.stallTimer);
    this.ctx.metrics.leaseKeepAliveUpstreamStreams.dec();
    if (this.upstream !== upstream) return; // closed on purpose
    this.upstream = null;
    const carried = [...this.inFlight.values()].filter((pending) => pending.waiters.length > 0);
    this.inFlight.clear();
    this.ctx.log.warn(
      { member: upstream.member.endpoint.url, code: statusName(final.code), err: final.details, keepAlivesInFlight: carried.length },
      'upstream keep-alive stream ended',
    );
    if (carried.length === 0) return; // the next renewal opens a new one
    if (this.leaderless()) {
      for (const pending of carried) this.hold(pending);
      return;
    }
    const refusal = this.ctx.writes.admit();
    if (refusal !== null) {
      this.fail(carried, toStatus(refusal));
      return;
    }
    this.fail(carried.filter((pending) => pending.sends >= MAX_SENDS), toStatus(new ProxyError('noUpstream')));
    for (const pending of carried) {
      if (pending.sends < MAX_SENDS && pending.waiters.length > 0) this.send(pending);
    }
  }

  private checkStall(upstream: Upstream): void {
    const oldest = this.inFlight.values().next();
    if (this.upstream !== upstream || oldest.done === true || Date.now() - oldest.value.sentAt < STALL_MS) return;
    this.ctx.log.warn({ member: upstream.member.endpoint.url, lease: oldest.value.id, stallMs: STALL_MS }, 'upstream keep-alive stream stalled; cancelling it');
    upstream.call.cancel();
  }

  private hold(pending: InFlight): void {
    pending.sentAt = Date.now();
    this.held.set(pending.id, pending);
    if (this.holdTimer !== undefined) return;
    this.holdTimer = setInterval(() => this.expireHeld(), STALL_CHECK_MS);
    this.holdTimer.unref();
  }

  /** Like etcd's request timeout: a renewal that waited this long for a leader ends its streams with etcd's words. */
  private expireHeld(): void {
    const expired = [...this.held.values()].filter((pending) => Date.now() - pending.sentAt >= STALL_MS);
    for (const pending of expired) this.held.delete(pending.id);
    this.stopHoldTimerIfIdle();
    this.fail(expired, noLeaderStatus());
  }

  private stopHoldTimerIfIdle(): void {
    if (this.held.size > 0 || this.holdTimer === undefined) return;
    clearInterval(this.holdTimer);
    this.holdTimer = undefined;
  }

  /** A leader is back: the held renewals go upstream, as etcd would now forward them. */
  private releaseHeld(): void {
    const held = [...this.held.values()].filter((pending) => pending.waiters.length > 0);
    this.held.clear();
    this.stopHoldTimerIfIdle();
    for (const pending of held) this.send(pending);
  }

  /** No leader, though a member answers: what the (require-leader) upstream stream carries is held, the stream dropped. */
  private leaderLost(): void {
    if (!this.leaderless()) return; // silent: upstreamLost() ends everything
    const carried = [...this.inFlight.values()].filter((pending) => pending.waiters.length > 0);
    this.closeUpstream('cancel');
    for (const pending of carried) this.hold(pending);
  }

  /** A downstream stream cannot fail one request alone: each stream waiting on these ends with the error. */
  private fail(pendings: readonly InFlight[], result: StatusObject): void {
    const streams = new Set(pendings.flatMap((pending) => pending.waiters.map((slot) => slot.downstream)));
    for (const downstream of streams) this.finish(downstream, result, 'proxy');
  }

  /**
   * The upstream is silent (no member answers at all): no keep-alive can be
   * answered truthfully, so every downstream stream ends now with the write
   * refusal rather than at its next renewal, as a client connected to a dead
   * etcd would see its stream break.
   */
  private upstreamLost(): void {
    this.held.clear();
    this.stopHoldTimerIfIdle();
    if (this.downstreams.size > 0) {
      const refusal = this.ctx.writes.admit();
      if (refusal === null) return;
      const result = toStatus(refusal);
      for (const downstream of [...this.downstreams]) this.finish(downstream, result, 'proxy');
    }
    this.closeUpstream('cancel');
  }

  private shutdown(downstream: Downstream, result: StatusObject): void {
    this.finish(downstream, result, 'proxy');
    // A stop is under way: holding the upstream stream for the idle delay would outlast it.
    if (this.downstreams.size === 0) this.closeUpstream('cancel');
  }

  private finish(downstream: Downstream, result: StatusObject, source: Source): void {
    if (!this.release(downstream, result.code, source)) return;
    if (result.code === status.OK) downstream.call.end();
    else downstream.call.emit('error', result);
  }

  /** Forgets a stream that ended: its requests wait for nothing any more. False if already forgotten. */
  private release(downstream: Downstream, code: status, source: Source): boolean {
    if (downstream.finished) return false;
    downstream.finished = true;
    downstream.untrack();
    downstream.unfollowLeader();
    this.downstreams.delete(downstream);
    this.ctx.metrics.grpcStreamsOpen.dec(this.labels);
    observeCall(this.ctx, this.rpc, code, null, source);
    for (const slot of downstream.owed) {
      const pending = this.inFlight.get(slot.id) ?? this.held.get(slot.id);
      if (pending !== undefined) pending.waiters = pending.waiters.filter((waiter) => waiter.downstream !== downstream);
    }
    downstream.owed.length = 0;
    if (this.downstreams.size === 0) this.scheduleIdleClose();
    return true;
  }

  private scheduleIdleClose(): void {
    clearTimeout(this.idleTimer);
    if (this.upstream === null) return;
    this.idleTimer = setTimeout(() => {
      if (this.downstreams.size === 0) this.closeUpstream('end');
    }, IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }

  /** 'end' lets etcd answer what is in flight and finish cleanly; 'cancel' drops the stream at once. */
  private closeUpstream(how: 'end' | 'cancel'): void {
    clearTimeout(this.idleTimer);
    const upstream = this.upstream;
    if (upstream === null) return;
    this.upstream = null;
    this.inFlight.clear();
    if (how === 'end') upstream.call.end();
    else upstream.call.cancel();
  }
}

/**
 * The LeaseKeepAlive handler: downstream streams share one upstream stream.
 * While the upstream has auth enabled every stream is relayed one-to-one
 * instead, since each carries its own client's token (docs/design.md, "Authentication").
 */
export function leaseKeepAliveHandler(ctx: CoreContext): DuplexHandler {
  const rpc = rpcRef(SERVICE, METHOD);
  const relayed = forwardBidi(ctx, rpc);
  const shared = new SharedKeepAlive(ctx, rpc);
  return (call) => {
    if (ctx.mirrorReads?.mirror.authEnabled() === true) relayed(call);
    else shared.serve(call);
  };
}
