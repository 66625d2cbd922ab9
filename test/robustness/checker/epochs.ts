import type { EtcdRevision, History, LeaseRecord, OperationRecord, RestoreRecord, WatchRecord } from '../history';

/** A record that overlaps a restore's window: right if it is right in any of the epochs it may belong to. */
export interface Ambiguous<T> {
  readonly record: T;
  /** The epochs' histories, each holding only their etcd revisions and this record's compaction points. */
  readonly candidates: readonly History[];
}

export interface EpochSplit {
  /**
   * One history per stretch of etcd's between restores: its revisions (up
   * to its restore's snapshot, those of the epochs before), and the records
   * that lie wholly inside it.
   */
  readonly epochs: readonly History[];
  readonly operations: readonly Ambiguous<OperationRecord>[];
  readonly watches: readonly Ambiguous<WatchRecord>[];
  /** Leases alive across a restore: etcd's own promises about them do not hold then (the restore took them back to the snapshot). */
  readonly leases: readonly LeaseRecord[];
}

interface Span {
  readonly from: number;
  readonly to: number;
}

/** A compaction the restored etcd came back with (the snapshot's), as a record the watch check counts. */
function compactionOf(restore: RestoreRecord): OperationRecord[] {
  if (restore.compactRevision <= 0) return [];
  return [{ type: 'op', id: -1, client: 'restore', via: 'etcd', request: { kind: 'compact', revision: restore.compactRevision }, start: restore.at, end: restore.at, result: { ok: true, revision: restore.snapshotRevision, stale: false } }];
}

/**
 * Splits a history with restores into epochs. Epoch i runs from restore i's
 * `settled` (the first: from the start) to restore i+1's `at` (the last: to
 * the end); a record wholly inside one belongs to it. A record that
 * overlaps a window [at, settled] may belong to the epoch before or the one
 * after (or any epoch it touches), as a proxy may still answer from what it
 * mirrored before it noticed the restore.
 */
export function splitIntoEpochs(history: History): EpochSplit {
  const restores = history.restores ?? [];
  const histories: EtcdRevision[][] = [[...history.etcd]];
  const compactions: OperationRecord[][] = [[]];
  for (const restore of restores) {
    const before = histories.at(-1) ?? [];
    histories.push([...before.filter((entry) => entry.revision <= restore.snapshotRevision), ...restore.etcd]);
    compactions.push(compactionOf(restore));
  }
  // Where each epoch surely holds (strict) and where it may (loose).
  const strict: Span[] = histories.map((_, i) => ({ from: restores[i - 1]?.settled ?? -Infinity, to: restores[i]?.at ?? Infinity }));
  const loose: Span[] = histories.map((_, i) => ({ from: restores[i - 1]?.at ?? -Infinity, to: restores[i]?.settled ?? Infinity }));
  const inside = (span: Span, from: number, to: number): boolean => from >= span.from && to <= span.to;
  const touches = (span: Span, from: number, to: number): boolean => from <= span.to && to >= span.from;
  const home = (from: number, to: number): number => strict.findIndex((span) => inside(span, from, to));
  const touched = (from: number, to: number): number[] => loose.flatMap((span, i) => (touches(span, from, to) ? [i] : []));

  const operations = histories.map((): OperationRecord[] => []);
  const watches = histories.map((): WatchRecord[] => []);
  const leases = histories.map((): LeaseRecord[] => []);
  const ambiguousOps: { record: OperationRecord; epochs: number[] }[] = [];
  const ambiguousWatches: { record: WatchRecord; epochs: number[] }[] = [];
  const spanning: LeaseRecord[] = [];
  for (const op of history.operations) {
    const epoch = home(op.start, op.end);
    if (epoch >= 0) operations[epoch]?.push(op);
    else ambiguousOps.push({ record: op, epochs: touched(op.start, op.end) });
  }
  for (const watch of history.watches) {
    const epoch = home(watch.opened, watch.end.at);
    if (epoch >= 0) watches[epoch]?.push(watch);
    else ambiguousWatches.push({ record: watch, epochs: touched(watch.opened, watch.end.at) });
  }
  for (const lease of history.leases ?? []) {
    // A lease lives at least its TTL past its last renewal: the whole of that must lie in one epoch.
    const lastSent = Math.max(lease.granted, ...lease.keepAlives.map((k) => k.sent));
    const epoch = home(lease.granted, (lease.stopped ?? lastSent) + lease.ttl * 1000);
    if (epoch >= 0) leases[epoch]?.push(lease);
    else spanning.push(lease);
  }
  const epochHistory = (i: number, records: Pick<History, 'operations' | 'watches'> & { leases?: readonly LeaseRecord[] }): History => ({
    seed: history.seed,
    faults: history.faults,
    etcd: histories[i] ?? [],
    operations: [...(compactions[i] ?? []), ...records.operations],
    watches: records.watches,
    leases: records.leases ?? [],
    ...(history.readable === undefined ? {} : { readable: history.readable }),
  });
  return {
    epochs: histories.map((_, i) => epochHistory(i, { operations: operations[i] ?? [], watches: watches[i] ?? [], leases: leases[i] ?? [] })),
    operations: ambiguousOps.map(({ record, epochs }) => ({ record, candidates: epochs.map((i) => epochHistory(i, { operations: [record], watches: [] })) })),
    watches: ambiguousWatches.map(({ record, epochs }) => ({ record, candidates: epochs.map((i) => epochHistory(i, { operations: [], watches: [record] })) })),
    leases: spanning,
  };
}
