import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import { LivenessVerdict, type LivenessEvents } from './liveness-verdict';
import { startMemberProbes } from './member-probes';
import type { UpstreamMember, UpstreamPool } from './pool';

export type { LivenessEvents } from './liveness-verdict';
export { IDLE_PROBE_INTERVAL_MS } from './member-probes';

/** How often a member in use that has shown no sign of a leader lately is asked whether it has one. */
export const PROBE_INTERVAL_MS = 1_000;
/** A probe that takes longer than this counts as a failure (a paused member never answers). */
const PROBE_TIMEOUT_MS = 2 * PROBE_INTERVAL_MS;

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
  /** How long no member with a leader has answered (ms). */
  quietForMs(): number;
  /** Work was sent to `member`: while it shows no sign of a leader, it is probed each second. */
  used(member: UpstreamMember): void;
  /** How often a sign of life is wanted from the member in use: well inside the upstream timeout. */
  readonly evidenceIntervalMs: number;
  close(): void;
}

export interface LivenessOptions {
  /** A member answered with the proxy's own loop marker: it is this proxy. */
  readonly selfDetected?: (member: UpstreamMember, proxiesInLoop: number) => void;
}

/**
 * Probes every member each second with a Status call carrying etcd's
 * require-leader metadata (member-probes.ts), records each member's health in
 * the pool, and decides whether the upstream cluster is lost
 * (liveness-verdict.ts; docs/design.md, "Members"): no member with a leader
 * has answered for `timeoutMs`; and whether it is silent: no member answered
 * at all. The mirror's watch responses count as answers too. The verdicts
 * change with one log line each way.
 */
export function createLiveness(pool: UpstreamPool, timeoutMs: number, log: Logger, options: LivenessOptions = {}): Liveness {
  const emitter = new EventEmitter<LivenessEvents>();
  // Signs of life must come several times within the timeout, or a short timeout (tests use 300 ms)
  // would call the upstream lost between two of them.
  const interval = Math.max(50, Math.min(PROBE_INTERVAL_MS, Math.floor(timeoutMs / 3)));
  const verdict = new LivenessVerdict(timeoutMs, log, emitter);
  const probes = startMemberProbes({ pool, intervalMs: interval, deadlineMs: Math.min(timeoutMs, PROBE_TIMEOUT_MS), verdict, selfDetected: options.selfDetected });
  return Object.assign(emitter, {
    isLost: () => verdict.isLost(),
    isSilent: () => verdict.isSilent(),
    hasAnswered: () => verdict.hasAnswered(),
    quietForMs: () => verdict.quietFor(Date.now()),
    heard: probes.heard,
    evidenceIntervalMs: interval,
    used: probes.used,
    close: probes.close,
  });
}
