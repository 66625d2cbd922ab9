import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { isServiceError } from '../etcd/errors';
import { LIVENESS_PROBE_HEADER } from '../etcd/metadata';
import type { LivenessVerdict } from './liveness-verdict';
import { isLoopError, loopLengthOf } from './loop-guard';
import type { UpstreamMember, UpstreamPool } from './pool';
import { callUpstream } from './unary';
import { kindOfError, kindOfHeaders } from './upstream-kind';

/** How often a member not in use is asked, so a failover knows where to go. */
export const IDLE_PROBE_INTERVAL_MS = 60_000;
/** A member the proxy sent work to within this long is in use. */
const IN_USE_MS = 30_000;

/** etcd's refusal of a require-leader call by a member that has no leader: it is alive, though. */
const NO_LEADER = 'etcdserver: no leader';

export interface MemberProbesDeps {
  readonly pool: UpstreamPool;
  /** How often the probes are looked at, and the verdict brought up to date. */
  readonly intervalMs: number;
  /** A probe that takes longer than this counts as a failure (a paused member never answers). */
  readonly deadlineMs: number;
  readonly verdict: LivenessVerdict;
  /**
   * A member answered with the proxy's own loop marker: it is this proxy
   * (`proxiesInLoop` 1), or leads back to it through other proxies (a cycle).
   */
  readonly selfDetected?: ((member: UpstreamMember, proxiesInLoop: number) => void) | undefined;
}

/** The probes of each member, and what the proxy saw of each member that decides when it is asked next. */
export interface MemberProbes {
  /** An answer that needed a leader: from `member`, it also spares that member its next probe. */
  heard(member?: UpstreamMember): void;
  /** Work was sent to `member`: while it shows no sign of a leader, it is probed each interval. */
  used(member: UpstreamMember): void;
  close(): void;
}

/**
 * Probes members with a Status call carrying etcd's require-leader metadata
 * (a member cut off from its leader refuses it), records each member's
 * health in the pool, and tells the verdict what answered. All members are
 * asked at once at start, and new ones as soon as the pool has them.
 */
export function startMemberProbes(deps: MemberProbesDeps): MemberProbes {
  const { pool, intervalMs, verdict } = deps;
  let closed = false;
  const probing = new Set<UpstreamMember>();
  /** Per member: the last answer that needed a leader, the last work sent, the last probe. */
  const heardAt = new WeakMap<UpstreamMember, number>();
  const usedAt = new WeakMap<UpstreamMember, number>();
  const probedAt = new WeakMap<UpstreamMember, number>();

  const heard = (member?: UpstreamMember): void => {
    if (member !== undefined) {
      heardAt.set(member, Date.now());
      // An answer that needed a leader is as good as a probe's: the member's health says so, though it is
      // not probed again while such answers keep coming (a member refused as leaderless, then heard on the
      // mirror's watch, would otherwise stay down in the pool and the metrics while it serves).
      pool.report(member, 'healthy');
    }
    verdict.heard();
  };

  const probe = async (member: UpstreamMember): Promise<void> => {
    const metadata = new Metadata();
    metadata.set('hasleader', 'true');
    // A proxy upstream answers a marked probe itself from what it knows of etcd (core/tier-probe.ts); etcd ignores the mark.
    metadata.set(LIVENESS_PROBE_HEADER, 'liveness');
    try {
      // The answer's headers also tell whether the member is etcd or a proxy (upstream-kind.ts), at no extra cost.
      await callUpstream(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: deps.deadlineMs, metadata, reason: 'liveness', onHeaders: (headers) => pool.learnKind(member, kindOfHeaders(headers)) });
      if (closed) return;
      pool.report(member, 'healthy');
      heard(member);
    } catch (error) {
      if (closed) return;
      pool.learnKind(member, kindOfError(error));
      if (isLoopError(error)) deps.selfDetected?.(member, loopLengthOf(error as ServiceError));
      if (isServiceError(error) && error.details === NO_LEADER) {
        pool.report(member, 'leaderless');
        verdict.heardLeaderless();
      } else {
        pool.report(member, 'unhealthy');
      }
    }
  };
  /**
   * An RPC costs etcd, and a fleet multiplies it: a member is asked only when
   * there is a reason. It is new (its health unknown); or nothing has shown
   * a leader anywhere within the last interval (an outage, or the member in
   * use went quiet: everyone is asked, to find where to go); or it is in use
   * and has shown no leader itself lately; or it was last asked long ago.
   * The member holding the mirror's require-leader watch answers its
   * progress requests every second, so while all is well it is never asked.
   */
  const dueForProbe = (member: UpstreamMember, now: number, quietEverywhere: boolean): boolean => {
    if (pool.health(member) === 'unknown' || !probedAt.has(member) || quietEverywhere) return true;
    const recentlyHeard = now - (heardAt.get(member) ?? 0) < 2 * intervalMs;
    const inUse = now - (usedAt.get(member) ?? 0) < IN_USE_MS;
    if (inUse && !recentlyHeard) return true;
    return !recentlyHeard && now - (probedAt.get(member) ?? 0) >= IDLE_PROBE_INTERVAL_MS;
  };
  const probeDue = (force: boolean): void => {
    const now = Date.now();
    const quietEverywhere = verdict.quietFor(now) >= 2 * intervalMs;
    for (const member of pool.members()) {
      // A member still owing its last answer is not asked again meanwhile.
      if (probing.has(member) || (!force && !dueForProbe(member, now, quietEverywhere))) continue;
      probing.add(member);
      probedAt.set(member, now);
      void probe(member).finally(() => probing.delete(member));
    }
  };
  const timer = setInterval(() => {
    verdict.update();
    if (!closed) probeDue(false);
  }, intervalMs);
  timer.unref();
  probeDue(true);
  // New members are probed at once, not a second later.
  const onChanged = (): void => probeDue(false);
  pool.on('changed', onChanged);

  return {
    heard,
    used(member) {
      usedAt.set(member, Date.now());
    },
    close() {
      closed = true;
      clearInterval(timer);
      pool.off('changed', onChanged);
    },
  };
}
