import type { ClientDuplexStream, StatusObject } from '@grpc/grpc-js';
import type { Logger } from '../log';
import { passBytes } from '../etcd/proto';
import type { UpstreamMember } from '../upstream/pool';
import { reasonedCall } from '../upstream/call-reason';
import { KEEPALIVE_PATH, requireLeaderMetadata } from './keepalive-messages';

/**
 * A renewal unanswered this long means the shared stream is stuck (etcd
 * answers each one in well under its own request timeout, 7 s by default).
 * Losing the upstream fails waiters sooner (docs/design.md, "Writes"); this only
 * bounds what liveness cannot see, such as a member that answers probes but
 * not renewals.
 */
export const STALL_MS = 10_000;
export const STALL_CHECK_MS = 1_000;

/** What one upstream keep-alive stream reports to; each hook is told which stream speaks. */
export interface UpstreamKeepAliveHooks {
  /** An answer etcd sent on the stream. */
  readonly answer: (stream: UpstreamKeepAlive, message: Buffer) => void;
  /** The stream ended, closed here or not, with its final status. */
  readonly ended: (stream: UpstreamKeepAlive, final: StatusObject) => void;
  /** The oldest renewal this stream carries unanswered, if any: the stall check times it. */
  readonly oldest: (stream: UpstreamKeepAlive) => { readonly id: string; readonly sentAt: number } | undefined;
  /** Upstream keep-alive streams opened (+1) and ended (-1). */
  readonly count: (delta: number) => void;
}

/**
 * One upstream LeaseKeepAlive stream on one member, shared by every
 * downstream stream: requests go as they came, answers come back by lease ID.
 * It cancels itself when a renewal stays unanswered for STALL_MS.
 */
export class UpstreamKeepAlive {
  private readonly stallTimer: NodeJS.Timeout;

  private constructor(
    readonly member: UpstreamMember,
    private readonly call: ClientDuplexStream<Buffer, Buffer>,
    private readonly hooks: UpstreamKeepAliveHooks,
    private readonly log: Logger,
  ) {
    this.stallTimer = setInterval(() => this.checkStall(), STALL_CHECK_MS);
    this.stallTimer.unref();
    hooks.count(1);
    call.on('data', (answer: Buffer) => hooks.answer(this, answer));
    // Every end, error or not, also arrives as 'status', handled there.
    call.on('error', () => undefined);
    call.on('status', (final: StatusObject) => {
      clearInterval(this.stallTimer);
      hooks.count(-1);
      hooks.ended(this, final);
    });
  }

  /** Opens a stream on `member`; null if its channel is closed (only while the proxy stops). */
  static open(member: UpstreamMember, hooks: UpstreamKeepAliveHooks, log: Logger): UpstreamKeepAlive | null {
    let call: ClientDuplexStream<Buffer, Buffer>;
    try {
      call = member.client.makeBidiStreamRequest(KEEPALIVE_PATH, passBytes, passBytes, requireLeaderMetadata(), reasonedCall('client'));
    } catch (error) {
      // grpc-js throws on a closed channel: only while the proxy stops.
      log.warn({ member: member.endpoint.url, err: error }, 'upstream keep-alive stream could not be opened');
      return null;
    }
    return new UpstreamKeepAlive(member, call, hooks, log);
  }

  /** Sends one renewal. No backpressure needed: at most one small message per distinct lease is outstanding. */
  write(request: Buffer): void {
    this.call.write(request);
  }

  /** Lets etcd answer what is in flight and finish cleanly. */
  end(): void {
    this.call.end();
  }

  /** Drops the stream at once. */
  cancel(): void {
    this.call.cancel();
  }

  private checkStall(): void {
    const oldest = this.hooks.oldest(this);
    if (oldest === undefined || Date.now() - oldest.sentAt < STALL_MS) return;
    this.log.warn({ member: this.member.endpoint.url, lease: oldest.id, stallMs: STALL_MS }, 'upstream keep-alive stream stalled; cancelling it');
    this.call.cancel();
  }
}
