import type { History } from '../history';
import { checkAnswers } from './answers';
import { checkReadable } from './auth';
import { checkFreshness } from './freshness';
import { checkLeases } from './leases';
import type { Violation } from './violation';
import { checkWatches } from './watches';
import { checkWrites } from './writes';

export type { Violation } from './violation';

/** What the checker looked at, for the report. */
export interface CheckSummary {
  readonly operations: number;
  readonly answers: number;
  readonly watchStreams: number;
  readonly watchEvents: number;
  readonly etcdRevisions: number;
  readonly leases: number;
  readonly violations: readonly Violation[];
}

/** Every check over one run's history. */
export function checkHistory(history: History): CheckSummary {
  const violations = [...checkAnswers(history), ...checkFreshness(history), ...checkWatches(history), ...checkWrites(history), ...checkReadable(history), ...checkLeases(history)];
  return {
    operations: history.operations.length,
    answers: history.operations.filter((op) => op.result.ok).length,
    watchStreams: history.watches.length,
    watchEvents: history.watches.reduce((sum, watch) => sum + watch.deliveries.reduce((n, d) => n + d.events.length, 0), 0),
    etcdRevisions: history.etcd.length,
    leases: (history.leases ?? []).length,
    violations,
  };
}
