import type { History } from '../history';
import { checkAnswers } from './answers';
import { checkReadable } from './auth';
import { splitIntoEpochs } from './epochs';
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
  /** Records that overlapped a restore of etcd, checked against either side of it; leases alive across one, not checked. */
  readonly acrossRestores: { readonly records: number; readonly leases: number };
  readonly violations: readonly Violation[];
}

/** Every check over the records of one stretch of etcd's history (no restore inside it). */
function checkEpoch(history: History): Violation[] {
  return [...checkAnswers(history), ...checkFreshness(history), ...checkWatches(history), ...checkWrites(history), ...checkLeases(history)];
}

/**
 * Every check over one run's history. A restore of etcd splits it into
 * epochs, each checked on its own; a record that overlaps a restore is
 * right if it is right in any epoch it may belong to (its answer, its
 * write, its watch stream), and is left out of real-time order and
 * per-client order, which a restore takes back by design.
 */
export function checkHistory(history: History): CheckSummary {
  const split = splitIntoEpochs(history);
  const violations = [...checkReadable(history), ...split.epochs.flatMap(checkEpoch)];
  for (const { candidates } of split.operations) {
    const found = candidates.map((candidate) => [...checkAnswers(candidate), ...checkWrites(candidate)]);
    if (found.every((list) => list.length > 0)) violations.push(...(found[0] ?? []));
  }
  for (const { candidates } of split.watches) {
    const found = candidates.map((candidate) => checkWatches(candidate, { endedByRestore: true }));
    if (found.every((list) => list.length > 0)) violations.push(...(found[0] ?? []));
  }
  return {
    operations: history.operations.length,
    answers: history.operations.filter((op) => op.result.ok).length,
    watchStreams: history.watches.length,
    watchEvents: history.watches.reduce((sum, watch) => sum + watch.deliveries.reduce((n, d) => n + d.events.length, 0), 0),
    etcdRevisions: history.etcd.length + (history.restores ?? []).reduce((sum, restore) => sum + restore.etcd.length, 0),
    leases: (history.leases ?? []).length,
    acrossRestores: { records: split.operations.length + split.watches.length, leases: split.leases.length },
    violations,
  };
}
