import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Mirror } from './mirror';
import { ConsistencyRound, type ConsistencyRoundDeps, type StepResult } from './consistency-round';

export type { StepResult } from './consistency-round';

export interface ConsistencyChecker {
  /** Takes the next step now (tests). */
  step(): Promise<StepResult>;
  close(): void;
}

/**
 * Compares the mirror with etcd round the mirrored key ranges, one page at a
 * time, within a byte budget (docs/design.md, "Persistence", and what a fleet of
 * proxies may cost etcd): each step reads one page of keys at the mirror's
 * revision R and compares it with the mirror's keys of the same span as they
 * were at R (the log undoes what arrived since, so writes meanwhile do not
 * matter); a page holds about as many keys as the budget allows for the step
 * interval, and the next step waits as long as the bytes read take to fit the
 * budget. Each round begins with cheap evidence for the whole keyspace: the
 * count of every mirrored range at R, one count-only read each. A difference
 * is logged, counted and repaired by a fresh list.
 */
export function startConsistencyChecks(deps: ConsistencyRoundDeps & { readonly metrics: Metrics; readonly log: Logger }): ConsistencyChecker {
  const round = new ConsistencyRound(deps);
  const record = (result: StepResult): number => recordStep(deps, round, result);
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  // An interval of 0 turns the check off.
  const schedule = (delayMs: number): void => {
    if (stopped || deps.intervalMs <= 0) return;
    timer = setTimeout(() => {
      round.step().then(
        (result) => schedule(Math.max(deps.intervalMs, (record(result) / deps.bytesPerSecond) * 1000)),
        (error: unknown) => {
          deps.metrics.consistencyChecks.inc({ result: 'error' });
          deps.log.debug({ err: error instanceof Error ? error.message : String(error) }, 'consistency check step could not run');
          schedule(deps.intervalMs);
        },
      );
    }, delayMs);
    timer.unref();
  };
  schedule(deps.intervalMs);
  return {
    step: async () => {
      const result = await round.step();
      record(result);
      return result;
    },
    // A step in flight may be waiting on the upstream; it touches the store
    // no more once stopped, so a stop need not wait for it.
    close() {
      stopped = true;
      round.stop();
      if (timer !== null) clearTimeout(timer);
    },
  };
}

/** Counts and logs a step's result, a difference asking for a list; the bytes it read from etcd. */
function recordStep(deps: { readonly metrics: Metrics; readonly log: Logger; readonly mirror: Mirror }, round: ConsistencyRound, result: StepResult): number {
  const { metrics, log } = deps;
  switch (result.kind) {
    case 'mismatch':
      metrics.consistencyChecks.inc({ result: 'mismatch' });
      log.error({ revision: result.revision, key: result.key.toString('base64'), detail: result.detail }, 'mirror differs from the upstream: re-listing');
      deps.mirror.requestRelist('consistency check found a difference');
      round.restart();
      return 0;
    case 'round':
      metrics.consistencyChecks.inc({ result: 'match' });
      metrics.consistencyCheckBytes.inc(result.bytes);
      log.debug({ keys: result.keys, bytes: result.roundBytes }, 'consistency check round complete');
      return result.bytes;
    case 'page':
      metrics.consistencyCheckBytes.inc(result.bytes);
      return result.bytes;
    case 'skipped':
      return 0;
  }
}
