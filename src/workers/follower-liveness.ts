import { EventEmitter } from 'node:events';
import type { Liveness, LivenessEvents } from '../upstream/liveness';

export interface FollowerLiveness extends Liveness {
  /** The primary's verdicts, as it last told them. */
  follow(lost: boolean, silent: boolean, answered: boolean): void;
}

/**
 * Whether the upstream is lost, as the primary process's probes and mirror
 * watch decide it: a worker probes nothing itself (a fleet's cost on etcd
 * must not grow with the workers of each machine). What a worker sees of
 * the members in its own calls shows in its pool; the verdict is one for
 * the whole proxy.
 */
export function createFollowerLiveness(evidenceIntervalMs: number): FollowerLiveness {
  const emitter = new EventEmitter<LivenessEvents>();
  let lost = false;
  let silent = false;
  let answered = false;
  return Object.assign(emitter, {
    evidenceIntervalMs,
    isLost: () => lost,
    isSilent: () => silent,
    hasAnswered: () => answered,
    // A worker hears nothing itself, and the primary tells verdicts, not each answer: not lost is taken as
    // heard just now. A proxy in front that probes this one (core/tier-probe.ts) then learns of an outage
    // when the primary's verdict turns, within the upstream timeout.
    quietForMs: () => (lost ? Number.POSITIVE_INFINITY : 0),
    heard: () => undefined,
    used: () => undefined,
    close: () => emitter.removeAllListeners(),
    follow(nextLost: boolean, nextSilent: boolean, nextAnswered: boolean) {
      const [wasLost, wasSilent, hadAnswered] = [lost, silent, answered];
      lost = nextLost;
      silent = nextSilent;
      answered = nextAnswered;
      if (answered && !hadAnswered) emitter.emit('answered');
      if (lost && !wasLost) emitter.emit('lost');
      if (silent && !wasSilent) emitter.emit('silent');
      if (!lost && wasLost) emitter.emit('back');
    },
  });
}
