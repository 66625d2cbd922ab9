import { EventEmitter } from 'node:events';
import { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log';
import { isLoopError } from './loop-guard';
import type { UpstreamMember, UpstreamPool } from './pool';
import { callUpstream } from './unary';
import { isServiceError } from '../etcd/errors';

/** How often every member is asked whether it has a leader. */
export const PROBE_INTERVAL_MS = 1_000;
/** A probe that takes longer than this counts as a failure (a paused member never answers). */
const PROBE_TIMEOUT_MS = 2 * PROBE_INTERVAL_MS;

export interface LivenessEvents {
  /** No member with a leader has answered for the upstream timeout. */
  lost: [];
  back: [];
  /** No member has answered at all for the upstream timeout (lost, and not merely leaderless). */
  silent: [];
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
  /** Any successful exchange with the upstream (a probe, a watch response) counts as an answer. */
  heard(): void;
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
 * cluster is lost (contract section 6): no member with a leader has answered
 * for `timeoutMs`; and whether it is silent: no member answered at all. The
 * mirror's watch responses count as answers too. The verdicts change with
 * one log line each way.
 */
export function createLiveness(pool: UpstreamPool, timeoutMs: number, log: Logger, options: LivenessOptions = {}): Liveness {
  const emitter = new EventEmitter<LivenessEvents>();
  let lastAnswer = Date.now();
  let lastAnyAnswer = lastAnswer;
  let lost = false;
  let silent = false;
  let closed = false;
  const probing = new Set<UpstreamMember>();

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
  const heard = (): void => {
    heardLeaderless();
    lastAnswer = Date.now();
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
      await callUpstream(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: Math.min(timeoutMs, PROBE_TIMEOUT_MS), metadata });
      if (closed) return;
      pool.report(member, 'healthy');
      heard();
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
  const probeAll = (): void => {
    for (const member of pool.members()) {
      // A member still owing its last answer is not asked again meanwhile.
      if (probing.has(member)) continue;
      probing.add(member);
      void probe(member).finally(() => probing.delete(member));
    }
  };
  const timer = setInterval(() => {
    update();
    if (!closed) probeAll();
  }, PROBE_INTERVAL_MS);
  timer.unref();
  probeAll();
  // New members are probed at once, not a second later.
  const onChanged = (): void => probeAll();
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
    heard,
    close() {
      closed = true;
      clearInterval(timer);
      pool.off('changed', onChanged);
    },
  });
}
