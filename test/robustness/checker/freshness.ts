import type { Answer, History, OperationRecord } from '../history';
import type { Violation } from './violation';

type Answered = OperationRecord & { readonly result: Answer };

function isWrite(op: OperationRecord): boolean {
  return op.request.kind === 'put' || op.request.kind === 'delete' || (op.request.kind === 'cas' && op.result.ok && op.result.succeeded === true);
}

/** A read of the newest revision (not a read at a past one). */
function readsNewest(op: OperationRecord): boolean {
  return (op.request.kind === 'range' && op.request.revision === 0) || op.request.kind === 'cas';
}

/** Acknowledged writes by end time, with the newest revision acknowledged up to each. */
class AcknowledgedWrites {
  private readonly ends: number[] = [];
  private readonly newest: number[] = [];
  private readonly records: Answered[] = [];

  constructor(writes: readonly Answered[]) {
    const sorted = [...writes].sort((a, b) => a.end - b.end);
    let newest = 0;
    for (const write of sorted) {
      newest = Math.max(newest, write.result.revision);
      this.ends.push(write.end);
      this.newest.push(newest);
      this.records.push(write);
    }
  }

  /** The newest revision of a write acknowledged before `time`, and that write. */
  before(time: number): { revision: number; write: Answered | undefined } {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ends[mid] ?? Infinity) < time) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) return { revision: 0, write: undefined };
    const revision = this.newest[lo - 1] ?? 0;
    return { revision, write: this.records.slice(0, lo).find((w) => w.result.revision === revision) };
  }
}

/**
 * Real-time order: a linearizable read not marked stale is at least as new
 * as every write acknowledged (by anyone, through anything) before it
 * began; any read through a proxy not marked stale is at least as new as
 * every write acknowledged through that proxy before it began (read your
 * writes); and no answer not marked stale names a lower revision than one
 * its client already had through that proxy, also across the proxy's
 * restarts.
 */
export function checkFreshness(history: History): Violation[] {
  const answered = history.operations.filter((op): op is Answered => op.result.ok);
  const writes = answered.filter(isWrite);
  const everywhere = new AcknowledgedWrites(writes);
  const byVia = new Map<string, AcknowledgedWrites>();
  for (const via of new Set(writes.map((w) => w.via))) byVia.set(via, new AcknowledgedWrites(writes.filter((w) => w.via === via)));
  const violations: Violation[] = [];
  for (const read of answered.filter(readsNewest)) {
    if (read.result.stale) continue;
    const linearizable = read.request.kind === 'cas' || (read.request.kind === 'range' && !read.request.serializable);
    const floor = linearizable ? everywhere.before(read.start) : read.via === 'etcd' ? { revision: 0, write: undefined } : (byVia.get(read.via)?.before(read.start) ?? { revision: 0, write: undefined });
    if (read.result.revision < floor.revision) {
      violations.push({
        check: 'freshness',
        message: `${read.via}: ${linearizable ? 'linearizable' : 'serializable'} read answered at revision ${read.result.revision}, after a write at ${floor.revision} was acknowledged${linearizable ? '' : ' through the same proxy'}`,
        evidence: floor.write === undefined ? [read] : [floor.write, read],
      });
    }
  }
  return [...violations, ...checkMonotonic(answered)];
}

/** Per client and proxy: an answer's revision is never below one the client already had. */
function checkMonotonic(answered: readonly Answered[]): Violation[] {
  const violations: Violation[] = [];
  const streams = new Map<string, Answered[]>();
  for (const op of answered) {
    if (op.via === 'etcd' || !readsNewest(op)) continue;
    const key = `${op.client}\u0000${op.via}`;
    const list = streams.get(key) ?? [];
    list.push(op);
    streams.set(key, list);
  }
  for (const ops of streams.values()) {
    const byEnd = [...ops].sort((a, b) => a.end - b.end);
    const byStart = [...ops].sort((a, b) => a.start - b.start);
    let seen: Answered | undefined;
    let i = 0;
    for (const op of byStart) {
      while (i < byEnd.length && (byEnd[i]?.end ?? Infinity) < op.start) {
        const done = byEnd[i] as Answered;
        if (seen === undefined || done.result.revision > seen.result.revision) seen = done;
        i += 1;
      }
      // A stale answer is the mirror at M while etcd was lost: it may be older than what etcd last said.
      if (seen !== undefined && !op.result.stale && op.result.revision < seen.result.revision) {
        violations.push({ check: 'monotonic', message: `${op.via}: client ${op.client} got revision ${op.result.revision} after it had ${seen.result.revision}`, evidence: [seen, op] });
      }
    }
  }
  return violations;
}
