import { EventEmitter } from 'node:events';
import { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log';
import { isLoopError } from './loop-guard';
import type { UpstreamMember, UpstreamPool } from './pool';
import { callUpstream } from './unary';
import { isServiceError } from '../etcd/errors';

/** How often a member in use that has shown no sign of a leader lately is asked whether it has one. */
export const PROBE_INTERVAL_MS = 1_000;
/** How often a member not in use is asked, so a failover knows where to go. */
export const IDLE_PROBE_INTERVAL_MS = 60_000;
/** A member the proxy sent work to within this long is in use. */
const IN_USE_MS = 30_000;
/** A probe that takes longer than this counts as a failure (a paused member never answers). */
const PROBE_TIMEOUT_MS = 2 * PROBE_INTERVAL_MS;

export interface LivenessEvents {
  /** No member with a leader has answered for the upstream timeout. */
  lost: [];
  back: [];
  /** No member has answered at all for the upstream timeout (lost, and not merely leaderless). */
  silent: [];
  /** The first answer with a leader since this process started. */
  answered: [];
}

export interface Liveness extends EventEmitter<LivenessEvents> {
  /** True once no member with a leader has answered for the upstream timeout: writes cannot succeed. */
  isLost(): boolean;
  /**
   * True once no member has answered at all for the upstream timeout. A
   * member that answers without a leader keeps this false: etcd still serves
   * what its store holds, and holds what needs a leader.
   */
  isSilent(): boolean;
  /**
   * True once a member with a leader has answered since this process
   * started. Until then nothing confirms what the mirror holds, even before
   * the upstream timeout has passed (a proxy started during an outage).
   */
  hasAnswered(): boolean;
  /**
   * An answer that needs a leader (a probe, a response on the mirror's
   * require-leader watch, a linearizable read) counts as an answer; from
   * `member`, it also spares that member its next probe.
   */
  heard(member?: UpstreamMember): void;
  /** Work was sent to `member`: while it shows no sign of a leader, it is probed each second. */
  used(member: UpstreamMember): void;
  /** How often a sign of life is wanted from the member in use: well inside the upstream timeout. */
  readonly evidenceIntervalMs: number;
  close(): void;
}

export interface LivenessOptions {
  /** A member answered with the proxy's own loop marker: it is this proxy. */
  readonly selfDetected?: (member: UpstreamMember) => void;
}

/** etcd's refusal of a require-leader call by a member that has no leader: it is alive, though. */
const NO_LEADER = 'etcdserver: no leader';

/**
 * Probes every member each second with a Status call carrying etcd's
 * require-leader metadata (a member cut off from its leader refuses it),
 * records each member's health in the pool, and decides whether the upstream
 * cluster is lost (docs/design.md, "Members"): no member with a leader has answered
 * for `timeoutMs`; and whether it is silent: no member answered at all. The
 * mirror's watch responses count as answers too. The verdicts change with
 * one log line each way.
 */
export function createLiveness(pool: UpstreamPool, timeoutMs: number, log: Logger, options: LivenessOptions = {}): Liveness {
  const emitter = new EventEmitter<LivenessEvents>();
  // Signs of life must come several times within the timeout, or a short timeout (tests use 300 ms)
  // would call the upstream lost between two of them.
  const interval = Math.max(50, Math.min(PROBE_INTERVAL_MS, Math.floor(timeoutMs / 3)));
  let lastAnswer = Date.now();
  let lastAnyAnswer = lastAnswer;
  let lost = false;
  let silent = false;
  let answered = false;
  let closed = false;
  const probing = new Set<UpstreamMember>();
  /** Per member: the last answer that needed a leader, the last work sent, the last probe. */
  const heardAt = new WeakMap<UpstreamMember, number>();
  const usedAt = new WeakMap<UpstreamMember, number>();
  const probedAt = new WeakMap<UpstreamMember, number>();

  const update = (): void => {
    const silentFor = Date.now() - lastAnswer;
    if (!lost && silentFor >= timeoutMs) {
      lost = true;
      log.warn({ silentForMs: silentFor }, 'upstream lost: no member answered within the upstream timeout');
      emitter.emit('lost');
    }
    if (!silent && Date.now() - lastAnyAnswer >= timeoutMs) {
      silent = true;
      log.warn('upstream silent: no member answered at all within the upstream timeout');
      emitter.emit('silent');
    }
  };
  /** A member answered, without a leader. */
  const heardLeaderless = (): void => {
    lastAnyAnswer = Date.now();
    if (silent) {
      silent = false;
      log.info('upstream answering again, without a leader');
    }
  };
  const heard = (member?: UpstreamMember): void => {
    if (member !== undefined) heardAt.set(member, Date.now());
    heardLeaderless();
    lastAnswer = Date.now();
    if (!answered) {
      answered = true;
      emitter.emit('answered');
    }
    if (lost) {
      lost = false;
      log.info('upstream back');
      emitter.emit('back');
    }
  };

  const probe = async (member: UpstreamMember): Promise<void> => {
    const metadata = new Metadata();
    metadata.set('hasleader', 'true');
    try {
      await callUpstream(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: Math.min(timeoutMs, PROBE_TIMEOUT_MS), metadata, reason: 'liveness' });
      if (closed) return;
      pool.report(member, 'healthy');
      heard(member);
    } catch (error) {
      if (closed) return;
      if (isLoopError(error)) options.selfDetected?.(member);
      if (isServiceError(error) && error.details === NO_LEADER) {
        pool.report(member, 'leaderless');
        heardLeaderless();
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
    const recentlyHeard = now - (heardAt.get(member) ?? 0) < 2 * interval;
    const inUse = now - (usedAt.get(member) ?? 0) < IN_USE_MS;
    if (inUse && !recentlyHeard) return true;
    return !recentlyHeard && now - (probedAt.get(member) ?? 0) >= IDLE_PROBE_INTERVAL_MS;
  };
  const probeDue = (force: boolean): void => {
    const now = Date.now();
    const quietEverywhere = now - lastAnswer >= 2 * interval;
    for (const member of pool.members()) {
      // A member still owing its last answer is not asked again meanwhile.
      if (probing.has(member) || (!force && !dueForProbe(member, now, quietEverywhere))) continue;
      probing.add(member);
      probedAt.set(member, now);
      void probe(member).finally(() => probing.delete(member));
    }
  };
  const timer = setInterval(() => {
    update();
    if (!closed) probeDue(false);
  }, interval);
  timer.unref();
  probeDue(true);
  // New members are probed at once, not a second later.
  const onChanged = (): void => probeDue(false);
  pool.on('changed', onChanged);

  return Object.assign(emitter, {
    isLost: () => {
      update();
      return lost;
    },
    isSilent: () => {
      update();
      return silent;
    },
    hasAnswered: () => answered,
    heard,
    evidenceIntervalMs: interval,
    used(member: UpstreamMember) {
      usedAt.set(member, Date.now());
    },
    close() {
      closed = true;
      clearInterval(timer);
      pool.off('changed', onChanged);
    },
  });
}
