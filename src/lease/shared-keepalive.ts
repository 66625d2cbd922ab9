import { status, type StatusObject } from '@grpc/grpc-js';
import { ProxyError, statusName, toStatus } from '../etcd/errors';
import type { Source } from '../metrics';
import { IdleClose } from './idle-close';
import type { SharedKeepAliveDeps } from './keepalive-deps';
import { KeepAliveDownstream, type KeepAliveCall } from './keepalive-downstream';
import { answerLeaseId, noLeaderStatus, okStatus, requestLeaseId, unmarshalStatus } from './keepalive-messages';
import { UpstreamKeepAlive, type UpstreamKeepAliveHooks } from './keepalive-upstream';
import { Renewals, type Renewal } from './renewals';

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
  private readonly downstreams = new Set<KeepAliveDownstream>();
  private readonly renewals = new Renewals((expired) => this.fail(expired, noLeaderStatus()));
  /** The shared stream; null until a renewal needs one, and again once it ended or was closed. */
  private upstream: UpstreamKeepAlive | null = null;
  private readonly idle = new IdleClose(
    () => this.downstreams.size === 0,
    () => this.closeUpstream('end'),
  );
  /** Only the current stream's answers and stalls count: one closed on purpose may still speak. */
  private readonly upstreamHooks: UpstreamKeepAliveHooks = {
    answer: (stream, message) => {
      if (this.upstream === stream) this.answer(message);
    },
    ended: (stream, final) => this.upstreamEnded(stream, final),
    oldest: (stream) => (this.upstream === stream ? this.renewals.oldestInFlight() : undefined),
    count: (delta) => this.deps.metrics.upstreamStreams(delta),
  };

  constructor(private readonly deps: SharedKeepAliveDeps) {
    deps.liveness?.on('silent', () => this.upstreamLost());
    deps.pool.on('unhealthy', () => this.leaderLost());
    deps.pool.on('healthy', () => this.releaseHeld());
  }

  /** Takes one downstream stream, refused as the forwarding path refuses a write stream. */
  serve(call: KeepAliveCall): void {
    const refusal = this.refusal();
    if (refusal !== null) {
      this.deps.metrics.called(refusal.code, 'proxy');
      call.emit('error', toStatus(refusal));
      return;
    }
    // etcd ends a require-leader stream when its member has had no leader for a few election timeouts,
    // and refuses one then; the sentinel says when etcd does.
    const requireLeader = call.metadata.get('hasleader')[0] === 'true';
    if (requireLeader && this.deps.leader.noLeader()) {
      this.deps.metrics.called(status.UNAVAILABLE, 'proxy');
      call.emit('error', noLeaderStatus());
      return;
    }
    const downstream = new KeepAliveDownstream(call);
    downstream.untrack = this.deps.track((shutdown) => this.shutdown(downstream, shutdown));
    if (requireLeader) this.followLeader(downstream);
    this.downstreams.add(downstream);
    this.idle.cancel();
    this.deps.metrics.streamsOpen(1);
    call.on('data', (message: Buffer) => this.receive(downstream, message));
    call.on('end', () => {
      downstream.halfClosed = true;
      this.deliver(downstream);
    });
    call.on('cancelled', () => this.release(downstream, status.CANCELLED, 'upstream'));
    call.on('error', () => this.release(downstream, status.CANCELLED, 'upstream'));
  }

  /** A require-leader stream ends with etcd's words when etcd would end it. */
  private followLeader(downstream: KeepAliveDownstream): void {
    const { leader } = this.deps;
    const onNoLeader = (): void => this.finish(downstream, noLeaderStatus(), 'proxy');
    leader.on('noLeader', onNoLeader);
    const release = leader.acquire();
    downstream.unfollowLeader = () => {
      leader.off('noLeader', onNoLeader);
      release();
    };
  }

  /** No member has a leader, and one still answers (as the probes found): renewals are held, streams stay open. */
  private leaderless(): boolean {
    const { pool } = this.deps;
    const members = pool.members();
    return !members.some((m) => pool.health(m) === 'healthy') && members.some((m) => pool.health(m) === 'leaderless');
  }

  /** The refusal a keep-alive gets now, if any: read-only mode, or an upstream that does not answer at all. */
  private refusal(): ProxyError | null {
    if (this.deps.mode() !== 'readonly' && this.leaderless()) return null;
    return this.deps.admitWrite();
  }

  private receive(downstream: KeepAliveDownstream, message: Buffer): void {
    if (downstream.finished) return;
    const id = requestLeaseId(message);
    if (id === null) {
      this.finish(downstream, unmarshalStatus(), 'proxy');
      return;
    }
    // Asked per request, not only when the stream opened: a stream outlives outages.
    const refusal = this.refusal();
    if (refusal !== null) {
      this.finish(downstream, toStatus(refusal), 'proxy');
      return;
    }
    const slot = downstream.owe(id);
    const pending = this.renewals.pending(id);
    if (pending !== undefined) {
      pending.waiters.push(slot);
      this.deps.metrics.coalesced();
      return;
    }
    this.send({ id, request: message, waiters: [slot], sends: 0, sentAt: 0 });
  }

  private send(renewal: Renewal): void {
    if (this.leaderless()) {
      this.renewals.hold(renewal);
      return;
    }
    const upstream = this.upstream ?? this.open();
    if (upstream === null) {
      this.fail([renewal], toStatus(new ProxyError('noUpstream')));
      return;
    }
    this.renewals.sent(renewal);
    upstream.write(renewal.request);
  }

  private open(): UpstreamKeepAlive | null {
    const member = this.deps.pool.candidates()[0];
    if (member === undefined) return null;
    this.upstream = UpstreamKeepAlive.open(member, this.upstreamHooks, this.deps.log);
    return this.upstream;
  }

  private answer(message: Buffer): void {
    const id = answerLeaseId(message);
    const answered = this.renewals.answered(id, message);
    if (answered === null) {
      this.deps.log.warn({ lease: id }, 'upstream keep-alive answer matches no renewal in flight; dropped');
      return;
    }
    for (const downstream of answered) this.deliver(downstream);
  }

  private deliver(downstream: KeepAliveDownstream): void {
    // etcd ends a half-closed stream once it has answered everything before the close.
    if (downstream.flush()) this.finish(downstream, okStatus(), 'upstream');
  }

  private upstreamEnded(upstream: UpstreamKeepAlive, final: StatusObject): void {
    if (this.upstream !== upstream) return; // closed on purpose
    this.upstream = null;
    const carried = this.renewals.takeInFlight();
    this.deps.log.warn(
      { member: upstream.member.endpoint.url, code: statusName(final.code), err: final.details, keepAlivesInFlight: carried.length },
      'upstream keep-alive stream ended',
    );
    if (carried.length > 0) this.resend(carried); // else the next renewal opens a new stream
  }

  /** What a broken stream carried: held while leaderless, refused as a write would be, else sent once more. */
  private resend(carried: readonly Renewal[]): void {
    if (this.leaderless()) {
      for (const renewal of carried) this.renewals.hold(renewal);
      return;
    }
    const refusal = this.deps.admitWrite();
    if (refusal !== null) {
      this.fail(carried, toStatus(refusal));
      return;
    }
    this.fail(carried.filter((renewal) => renewal.sends >= MAX_SENDS), toStatus(new ProxyError('noUpstream')));
    for (const renewal of carried) {
      if (renewal.sends < MAX_SENDS && renewal.waiters.length > 0) this.send(renewal);
    }
  }

  /** A leader is back: the held renewals go upstream, as etcd would now forward them. */
  private releaseHeld(): void {
    for (const renewal of this.renewals.takeHeld()) this.send(renewal);
  }

  /** No leader, though a member answers: what the (require-leader) upstream stream carries is held, the stream dropped. */
  private leaderLost(): void {
    if (!this.leaderless()) return; // silent: upstreamLost() ends everything
    const carried = this.renewals.takeInFlight();
    this.closeUpstream('cancel');
    for (const renewal of carried) this.renewals.hold(renewal);
  }

  /** A downstream stream cannot fail one request alone: each stream waiting on these ends with the error. */
  private fail(renewals: readonly Renewal[], result: StatusObject): void {
    const streams = new Set(renewals.flatMap((renewal) => renewal.waiters.map((slot) => slot.downstream)));
    for (const downstream of streams) this.finish(downstream, result, 'proxy');
  }

  /**
   * The upstream is silent (no member answers at all): no keep-alive can be
   * answered truthfully, so every downstream stream ends now with the write
   * refusal rather than at its next renewal, as a client connected to a dead
   * etcd would see its stream break.
   */
  private upstreamLost(): void {
    this.renewals.dropHeld();
    if (this.downstreams.size > 0) {
      const refusal = this.deps.admitWrite();
      if (refusal === null) return;
      const result = toStatus(refusal);
      for (const downstream of [...this.downstreams]) this.finish(downstream, result, 'proxy');
    }
    this.closeUpstream('cancel');
  }

  private shutdown(downstream: KeepAliveDownstream, result: StatusObject): void {
    this.finish(downstream, result, 'proxy');
    // A stop is under way: holding the upstream stream for the idle delay would outlast it.
    if (this.downstreams.size === 0) this.closeUpstream('cancel');
  }

  private finish(downstream: KeepAliveDownstream, result: StatusObject, source: Source): void {
    if (this.release(downstream, result.code, source)) downstream.close(result);
  }

  /** Forgets a stream that ended: its requests wait for nothing any more. False if already forgotten. */
  private release(downstream: KeepAliveDownstream, code: status, source: Source): boolean {
    if (downstream.finished) return false;
    downstream.finished = true;
    downstream.untrack();
    downstream.unfollowLeader();
    this.downstreams.delete(downstream);
    this.deps.metrics.streamsOpen(-1);
    this.deps.metrics.called(code, source);
    this.renewals.forget(downstream);
    downstream.owed.length = 0;
    if (this.downstreams.size === 0) this.scheduleIdleClose();
    return true;
  }

  private scheduleIdleClose(): void {
    if (this.upstream === null) this.idle.cancel();
    else this.idle.start();
  }

  /** 'end' lets etcd answer what is in flight and finish cleanly; 'cancel' drops the stream at once. */
  private closeUpstream(how: 'end' | 'cancel'): void {
    this.idle.cancel();
    const upstream = this.upstream;
    if (upstream === null) return;
    this.upstream = null;
    this.renewals.dropInFlight();
    if (how === 'end') upstream.end();
    else upstream.cancel();
  }
}
