import type { EtcdRevision, FaultRecord, History, RecordedEvent, WatchRecord } from '../history';
import { inRange } from './keyspace';
import type { Violation } from './violation';

function sameEvent(a: RecordedEvent, b: RecordedEvent): boolean {
  return a.type === b.type && a.kv.key === b.kv.key && a.kv.value === b.kv.value && a.kv.modRevision === b.kv.modRevision;
}

function describe(event: RecordedEvent | undefined): string {
  return event === undefined ? 'nothing' : `${event.type} ${event.kv.key}@${event.kv.modRevision}`;
}

/** The faults during which no member answers (every member killed or paused). */
const EVERY_MEMBER_DOWN = new Set(['kill-all', 'stop-all', 'restart-proxy-in-outage', 'bucket-fallback']);

/**
 * While no member answers, a proxy cancels a watch from a revision its log
 * does not hold with compact_revision at the oldest one it can replay (as
 * the README's Watches section says): etcd is not there to replay it. A
 * proxy whose data dir was wiped and that took the bucket's snapshot holds
 * no log below that snapshot's revision + 1, so a client resuming just below
 * it is told `compacted` there, though etcd compacted less. Such an end is
 * the proxy's outage answer, not a false report of etcd's compaction, when
 * it came through a proxy during such a fault and names no revision past
 * etcd's newest then + 1 (that a revision it still needed is below it is
 * checked as for any other).
 */
function outageCompaction(watch: WatchRecord, faults: readonly FaultRecord[], etcd: readonly EtcdRevision[]): boolean {
  const at = watch.end.at;
  if (watch.via === 'etcd' || !faults.some((fault) => EVERY_MEMBER_DOWN.has(fault.name) && fault.at <= at && at <= (fault.until ?? Infinity))) return false;
  const newest = etcd.reduce((revision, entry) => ((entry.at ?? 0) <= at ? Math.max(revision, entry.revision) : revision), 0);
  return (watch.end.compactRevision ?? 0) <= newest + 1;
}

/**
 * Every watch stream's events equal etcd's history for its range from its
 * start revision, in order, none missing, none twice; each chain of
 * streams resumes at its last revision + 1; a compaction ends a stream only
 * as etcd's would; a chain the run closed at the end had every event.
 * `endedByRestore`: the streams lived across a restore of etcd, which may
 * end them as compacted at any revision.
 */
export function checkWatches(history: History, options: { readonly endedByRestore?: boolean } = {}): Violation[] {
  const events = history.etcd.flatMap((entry) => entry.events);
  /** When the history watch straight on etcd saw each revision. */
  const recordedAt = new Map(history.etcd.map((entry) => [entry.revision, entry.at ?? 0]));
  const compacted = Math.max(0, ...history.operations.filter((op) => op.request.kind === 'compact' && op.result.ok).map((op) => (op.request.kind === 'compact' ? op.request.revision : 0)));
  const violations: Violation[] = [];
  const chains = new Map<string, WatchRecord[]>();
  for (const watch of history.watches) chains.set(watch.chain, [...(chains.get(watch.chain) ?? []), watch]);
  for (const chain of chains.values()) {
    chain.sort((a, b) => a.opened - b.opened);
    let next: number | null = null;
    for (const watch of chain) {
      if (next !== null && watch.startRevision !== next) {
        violations.push({ check: 'watch', message: `${watch.via}: client ${watch.client} resumed its watch at ${watch.startRevision}, not at ${next}`, evidence: [watch] });
      }
      const wanted = events.filter((event) => event.kv.modRevision >= watch.startRevision && inRange(event.kv.key, watch.key, watch.rangeEnd));
      const problem = checkStream(watch, wanted, options.endedByRestore === true ? Infinity : compacted, outageCompaction(watch, history.faults, history.etcd));
      if (problem !== null) violations.push({ check: 'watch', message: `${watch.via}: client ${watch.client}'s watch of [${watch.key}, ${watch.rangeEnd}) from ${watch.startRevision}: ${problem}`, evidence: [watch] });
      next = lastRevision(watch) + 1;
      if (watch === chain.at(-1) && watch.end.reason === 'closed') {
        // Only what etcd had made before the stream was closed (a lease expiring after the traffic stopped comes later).
        const missing = wanted.filter((event) => event.kv.modRevision > lastRevision(watch) && (recordedAt.get(event.kv.modRevision) ?? 0) <= watch.end.at);
        if (missing.length > 0) violations.push({ check: 'watch', message: `${watch.via}: client ${watch.client}'s watch ended the run without ${missing.length} events, from ${describe(missing[0])}`, evidence: [watch] });
      }
    }
  }
  return violations;
}

/** The last revision the stream delivered (its start - 1 when none). */
function lastRevision(watch: WatchRecord): number {
  const delivered = watch.deliveries.flatMap((delivery) => delivery.events);
  return delivered.at(-1)?.kv.modRevision ?? watch.startRevision - 1;
}

/** `outage`: a compacted end the proxy gave while no member answered (outageCompaction), not etcd's compaction. */
function checkStream(watch: WatchRecord, wanted: readonly RecordedEvent[], compacted: number, outage: boolean): string | null {
  let header = 0;
  let index = 0;
  for (const delivery of watch.deliveries) {
    if (delivery.revision < header) return `a response's revision went back from ${header} to ${delivery.revision}`;
    header = delivery.revision;
    // A response without events (a progress notification) says every event up to its revision was sent.
    const owed = delivery.events.length === 0 ? wanted.findIndex((event, i) => i >= index && event.kv.modRevision <= delivery.revision) : -1;
    if (owed >= 0) return `a progress notification at ${delivery.revision} before ${describe(wanted[owed])} was delivered`;
    for (const event of delivery.events) {
      if (event.kv.modRevision > delivery.revision) return `an event at ${event.kv.modRevision} in a response at revision ${delivery.revision}`;
      const want = wanted[index];
      if (want === undefined || !sameEvent(event, want)) return `delivered ${describe(event)} where etcd's history has ${describe(want)}`;
      index += 1;
    }
  }
  // A proxy that notices etcd was restored cancels its watches as compacted, whatever they needed.
  if (watch.end.reason === 'compacted' && compacted !== Infinity) {
    const needed = lastRevision(watch) + 1;
    const at = watch.end.compactRevision ?? 0;
    if (needed >= at) return `ended as compacted at ${at}, but it needed revision ${needed}, which a compaction at ${at} keeps`;
    if (at > compacted && !outage) return `ended as compacted at ${at}, but nothing compacted etcd past ${compacted}`;
  }
  return null;
}
