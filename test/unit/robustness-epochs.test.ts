// Unit test (no network): the robustness checker across a restore of etcd from a snapshot. The same
// revisions mean two things then (before and after); each record is checked against the side it belongs
// to, and one that overlaps the restore against either. Histories written by hand.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHistory } from '../robustness/checker/check-history';
import type { Answer, EtcdRevision, History, OperationRecord, RangeRequest, RecordedEvent, RecordedKv, Request, RestoreRecord, WatchRecord } from '../robustness/history';

const kv = (key: string, value: string, modRevision: number, createRevision = modRevision, version = 1): RecordedKv => ({ key, value, modRevision, createRevision, version, lease: '0' });
const put = (key: string, value: string, revision: number, createRevision = revision, version = 1): RecordedEvent => ({ type: 'put', kv: kv(key, value, revision, createRevision, version) });

/** Before the restore: /a=1 at 2, /b=1 at 3, /a=lost at 4, /b=lost at 5 (the snapshot holds 3). */
const BEFORE: EtcdRevision[] = [
  { type: 'etcd', revision: 2, events: [put('/a', '1', 2)] },
  { type: 'etcd', revision: 3, events: [put('/b', '1', 3)] },
  { type: 'etcd', revision: 4, events: [put('/a', 'lost', 4, 2, 2)] },
  { type: 'etcd', revision: 5, events: [put('/b', 'lost', 5, 3, 2)] },
];
/** Restored to 3 at 100 ms, every proxy serving it at 150 ms: /c=new at 4, /a=new at 5. */
const RESTORE: RestoreRecord = {
  type: 'restore',
  at: 100,
  settled: 150,
  snapshotRevision: 3,
  compactRevision: 0,
  newClusterId: false,
  etcd: [
    { type: 'etcd', revision: 4, events: [put('/c', 'new', 4)] },
    { type: 'etcd', revision: 5, events: [put('/a', 'new', 5, 2, 2)] },
  ],
};

let nextId = 0;
function op(request: Request, result: OperationRecord['result'], start: number, end: number, via = 'p1', client = 'c1'): OperationRecord {
  nextId += 1;
  return { type: 'op', id: nextId, client, via, request, start, end, result };
}
const range = (extra: Partial<RangeRequest> = {}): RangeRequest => ({ kind: 'range', key: '/', rangeEnd: '0', revision: 0, serializable: true, limit: 0, countOnly: false, keysOnly: false, ...extra });
const answer = (revision: number, kvs: RecordedKv[], extra: Partial<Answer> = {}): Answer => ({ ok: true, revision, stale: false, kvs, count: kvs.length, more: false, ...extra });
const OLD_AT_5 = [kv('/a', 'lost', 4, 2, 2), kv('/b', 'lost', 5, 3, 2)];
const NEW_AT_5 = [kv('/a', 'new', 5, 2, 2), kv('/b', '1', 3), kv('/c', 'new', 4)];

function watch(deliveries: WatchRecord['deliveries'], extra: Partial<WatchRecord> = {}): WatchRecord {
  nextId += 1;
  return { type: 'watch', id: nextId, client: 'w1', chain: `w1/${nextId}`, via: 'p1', key: '/', rangeEnd: '0', startRevision: 4, opened: 50, deliveries, end: { at: 300, reason: 'closed' }, ...extra };
}

/** Right on both sides of the restore, and in its window. */
function rightHistory(): History {
  return {
    seed: 1,
    etcd: BEFORE,
    restores: [RESTORE],
    faults: [],
    operations: [
      op({ kind: 'put', key: '/b', value: 'lost', lease: '0' }, answer(5, []), 40, 45),
      op(range({ serializable: false }), answer(5, OLD_AT_5), 50, 55),
      // In the window: the proxy still answers from what it mirrored before.
      op(range(), answer(5, OLD_AT_5), 120, 121),
      // After: the restored etcd's revision 5, lower than nothing, yet the same number means another keyspace.
      op({ kind: 'put', key: '/a', value: 'new', lease: '0' }, answer(5, []), 160, 162),
      op(range({ serializable: false }), answer(5, NEW_AT_5), 170, 171),
    ],
    watches: [
      watch([{ at: 60, revision: 5, events: [put('/a', 'lost', 4, 2, 2), put('/b', 'lost', 5, 3, 2)] }], { end: { at: 130, reason: 'compacted', compactRevision: 6 } }),
      watch([{ at: 200, revision: 5, events: [put('/c', 'new', 4), put('/a', 'new', 5, 2, 2)] }], { opened: 160 }),
    ],
  };
}

describe('robustness checker across a restore of etcd', () => {
  test('finds nothing wrong in a right history, though revisions went back and mean two things', () => {
    const summary = checkHistory(rightHistory());
    assert.deepEqual(summary.violations, []);
    assert.equal(summary.etcdRevisions, 6);
    assert.deepEqual(summary.acrossRestores, { records: 2, leases: 0 }, 'the read in the window and the watch that lived across it');
  });

  test('an answer from before the restore after every proxy served the restored etcd', () => {
    const history = rightHistory();
    const late = op(range(), answer(5, OLD_AT_5), 180, 181);
    const found = checkHistory({ ...history, operations: [...history.operations, late] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['answers']);
  });

  test('an answer in the window that is neither side', () => {
    const history = rightHistory();
    const mixed = op(range(), answer(5, [kv('/a', 'lost', 4, 2, 2), kv('/b', '1', 3), kv('/c', 'new', 4)]), 120, 125);
    const found = checkHistory({ ...history, operations: [...history.operations, mixed] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['answers']);
  });

  test('a watch that went on across the restore with the restored etcd\'s events after those of before', () => {
    const history = rightHistory();
    const across = watch([
      { at: 60, revision: 4, events: [put('/a', 'lost', 4, 2, 2)] },
      { at: 200, revision: 5, events: [put('/a', 'new', 5, 2, 2)] },
    ]);
    const found = checkHistory({ ...history, watches: [...history.watches, across] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['watch']);
  });

  test('freshness still holds on each side: a read after the restore below a write acknowledged after it', () => {
    const history = rightHistory();
    const stale = op(range({ key: '/c', rangeEnd: '', serializable: false }), answer(3, []), 170, 172, 'p2', 'c2');
    const found = checkHistory({ ...history, operations: [...history.operations, stale] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['freshness']);
  });

  test('a write no side holds is still found (what the restore took back is held by the side before it)', () => {
    const history = rightHistory();
    const phantom = op({ kind: 'put', key: '/z', value: 'never', lease: '0' }, answer(4, []), 30, 35);
    const found = checkHistory({ ...history, operations: [...history.operations, phantom] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['writes']);
  });
});
