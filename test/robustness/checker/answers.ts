import type { Answer, EtcdRevision, History, OperationRecord, RecordedKv } from '../history';
import { Keyspace } from './keyspace';
import type { Violation } from './violation';

type Answered = OperationRecord & { readonly result: Answer };

/** The revision whose keyspace an answer must equal: the one asked for, or else its header's. */
function stateRevision(record: Answered): number {
  return record.request.kind === 'range' && record.request.revision > 0 ? record.request.revision : record.result.revision;
}

function sameKv(a: RecordedKv, b: RecordedKv): boolean {
  return a.key === b.key && a.value === b.value && a.createRevision === b.createRevision && a.modRevision === b.modRevision && a.version === b.version;
}

function describeKvs(kvs: readonly RecordedKv[]): string {
  return kvs.map((kv) => `${kv.key}@${kv.modRevision}`).join(' ') || '(none)';
}

/**
 * Every answer equals etcd's keyspace at its revision: a Range's keys,
 * values, versions, count and `more`, a failed compare-and-swap's read.
 * A stale answer (the mirror while etcd was lost) is held to the same: a
 * whole keyspace at one revision, never a mix.
 */
export function checkAnswers(history: History): Violation[] {
  const violations: Violation[] = [];
  const last = history.etcd.at(-1)?.revision ?? 1;
  const answered = history.operations.filter((op): op is Answered => op.result.ok && (op.request.kind === 'range' || (op.request.kind === 'cas' && op.result.succeeded === false)));
  answered.sort((a, b) => stateRevision(a) - stateRevision(b));
  const keyspace = new Keyspace();
  const cursor = { index: 0 };
  for (const record of answered) {
    const revision = stateRevision(record);
    if (record.result.revision > last) {
      violations.push({ check: 'answers', message: `answer at revision ${record.result.revision}, past etcd's last (${last})`, evidence: [record] });
      continue;
    }
    keyspace.advance(history.etcd, revision, cursor);
    const problem = compare(record, keyspace);
    if (problem !== null) violations.push({ check: 'answers', message: `${record.via}: ${problem} (etcd at revision ${revision})`, evidence: [record, ...eventsNear(history.etcd, revision)] });
  }
  return violations;
}

function compare(record: Answered, keyspace: Keyspace): string | null {
  const { request, result } = record;
  const got = result.kvs ?? [];
  if (request.kind === 'cas') {
    const want = keyspace.get(request.key);
    const match = want === undefined ? got.length === 0 : got.length === 1 && got[0] !== undefined && sameKv(got[0], want);
    return match ? null : `compare-and-swap of ${request.key} read ${describeKvs(got)}, etcd had ${want === undefined ? '(none)' : describeKvs([want])}`;
  }
  if (request.kind !== 'range') return null;
  const want = keyspace.range(request);
  if (got.length !== want.kvs.length || got.some((kv, i) => !sameKv(kv, want.kvs[i] as RecordedKv))) {
    return `range [${request.key}, ${request.rangeEnd}) answered ${describeKvs(got)}, etcd had ${describeKvs(want.kvs)}`;
  }
  if (result.count !== undefined && result.count !== want.count) return `range [${request.key}, ${request.rangeEnd}) counted ${result.count}, etcd ${want.count}`;
  if (result.more !== undefined && result.more !== want.more) return `range [${request.key}, ${request.rangeEnd}) said more=${result.more}, etcd more=${want.more}`;
  return null;
}

/** The revision itself and the one before: what the answer should have shown. */
function eventsNear(history: readonly EtcdRevision[], revision: number): EtcdRevision[] {
  return history.filter((entry) => entry.revision === revision || entry.revision === revision - 1);
}
