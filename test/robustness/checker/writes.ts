import type { History, OperationRecord } from '../history';
import type { Violation } from './violation';

/**
 * No acknowledged write is missing from etcd's history: a Put (or a
 * compare-and-swap that succeeded) answered at revision R put that value at
 * R; a Delete answered at R either deleted at R or found nothing to delete.
 */
export function checkWrites(history: History): Violation[] {
  const byRevision = new Map(history.etcd.map((entry) => [entry.revision, entry]));
  const violations: Violation[] = [];
  for (const op of history.operations) {
    if (!op.result.ok) continue;
    const problem = missing(op, byRevision);
    if (problem === null) continue;
    const entry = byRevision.get(op.result.revision);
    violations.push({ check: 'writes', message: `${op.via}: ${problem}`, evidence: entry === undefined ? [op] : [op, entry] });
  }
  return violations;
}

function missing(op: OperationRecord, byRevision: ReadonlyMap<number, History['etcd'][number]>): string | null {
  if (!op.result.ok) return null;
  const { request } = op;
  const revision = op.result.revision;
  const entry = byRevision.get(revision);
  const put = (key: string, value: string): boolean => entry?.events.some((event) => event.type === 'put' && event.kv.key === key && event.kv.value === value && event.kv.modRevision === revision) === true;
  if (request.kind === 'put' && !put(request.key, request.value)) return `put of ${request.key} acknowledged at revision ${revision}, which etcd's history does not hold`;
  if (request.kind === 'cas' && op.result.succeeded === true && !put(request.key, request.value)) return `compare-and-swap of ${request.key} acknowledged at revision ${revision}, which etcd's history does not hold`;
  return null;
}
