// Unit test (no network): the robustness checker finds each kind of wrong answer in a made-up history, and
// finds nothing in a right one. (The histories here are written by hand; real ones come from test/robustness/run.ts.)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHistory } from '../robustness/checker/check-history';
import type { Answer, EtcdRevision, History, LeaseRecord, OperationRecord, RangeRequest, RecordedEvent, RecordedKv, Request, WatchRecord } from '../robustness/history';

const kv = (key: string, value: string, modRevision: number, createRevision = modRevision, version = 1): RecordedKv => ({ key, value, modRevision, createRevision, version, lease: '0' });
const put = (key: string, value: string, revision: number, createRevision = revision, version = 1): RecordedEvent => ({ type: 'put', kv: kv(key, value, revision, createRevision, version) });
const del = (key: string, revision: number): RecordedEvent => ({ type: 'delete', kv: kv(key, '', revision, 0, 0) });

/** etcd's history: /a=1 at 2, /b=1 at 3, /a=2 at 4, /b deleted at 5. */
const ETCD: EtcdRevision[] = [
  { type: 'etcd', revision: 2, events: [put('/a', '1', 2)] },
  { type: 'etcd', revision: 3, events: [put('/b', '1', 3)] },
  { type: 'etcd', revision: 4, events: [put('/a', '2', 4, 2, 2)] },
  { type: 'etcd', revision: 5, events: [del('/b', 5)] },
];

let nextId = 0;
function op(request: Request, result: OperationRecord['result'], start: number, end: number, via = 'p1', client = 'c1'): OperationRecord {
  nextId += 1;
  return { type: 'op', id: nextId, client, via, request, start, end, result };
}
const range = (key: string, rangeEnd: string, extra: Partial<RangeRequest> = {}): RangeRequest => ({ kind: 'range', key, rangeEnd, revision: 0, serializable: true, limit: 0, countOnly: false, keysOnly: false, ...extra });
const answer = (revision: number, kvs: RecordedKv[], extra: Partial<Answer> = {}): Answer => ({ ok: true, revision, stale: false, kvs, count: kvs.length, more: false, ...extra });

function watch(deliveries: WatchRecord['deliveries'], extra: Partial<WatchRecord> = {}): WatchRecord {
  nextId += 1;
  return { type: 'watch', id: nextId, client: 'w1', chain: 'w1/0', via: 'p1', key: '/', rangeEnd: '0', startRevision: 2, opened: 0, deliveries, end: { at: 100, reason: 'closed' }, ...extra };
}

/** A history that is right in every respect the checks look at. */
function rightHistory(): History {
  return {
    seed: 1,
    etcd: ETCD,
    faults: [],
    operations: [
      op({ kind: 'put', key: '/a', value: '2', lease: '0' }, answer(4, []), 10, 12),
      op(range('/', '0', { serializable: false }), answer(4, [kv('/a', '2', 4, 2, 2), kv('/b', '1', 3)]), 13, 14),
      op(range('/', '0'), answer(5, [kv('/a', '2', 4, 2, 2)], { stale: true }), 20, 21),
      op(range('/', '0', { revision: 3 }), answer(5, [kv('/a', '1', 2), kv('/b', '1', 3)]), 22, 23),
      op(range('/', '0', { limit: 1 }), answer(4, [kv('/a', '2', 4, 2, 2)], { count: 2, more: true }), 15, 16),
    ],
    watches: [
      watch([{ at: 1, revision: 3, events: [put('/a', '1', 2), put('/b', '1', 3)] }], { end: { at: 5, reason: 'error' } }),
      watch([{ at: 6, revision: 5, events: [put('/a', '2', 4, 2, 2), del('/b', 5)] }], { startRevision: 4, opened: 6 }),
    ],
  };
}

describe('robustness checker', () => {
  test('finds nothing wrong in a right history', () => {
    assert.deepEqual(checkHistory(rightHistory()).violations, []);
  });

  test('a stale answer that mixes two revisions', () => {
    const history = rightHistory();
    const mixed = op(range('/', '0'), answer(5, [kv('/a', '2', 4, 2, 2), kv('/b', '1', 3)], { stale: true }), 30, 31);
    const found = checkHistory({ ...history, operations: [...history.operations, mixed] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['answers']);
    assert.match(found[0]?.message ?? '', /etcd at revision 5/);
  });

  test('a wrong count or more', () => {
    const history = rightHistory();
    const miscounted = op(range('/', '0', { limit: 1 }), answer(4, [kv('/a', '2', 4, 2, 2)], { count: 1, more: false }), 17, 18);
    assert.deepEqual(checkHistory({ ...history, operations: [...history.operations, miscounted] }).violations.map((v) => v.check), ['answers']);
  });

  test('a linearizable read older than a write acknowledged before it began, through another proxy', () => {
    const history = rightHistory();
    const old = op(range('/a', '', { serializable: false }), answer(3, [kv('/a', '1', 2)]), 13, 14, 'p2', 'c2');
    const found = checkHistory({ ...history, operations: [...history.operations, old] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['freshness']);
  });

  test('a serializable read through the proxy a write went through, older than that write', () => {
    const history = rightHistory();
    const old = op(range('/a', ''), answer(3, [kv('/a', '1', 2)]), 13, 14, 'p1', 'c2');
    assert.deepEqual(checkHistory({ ...history, operations: [...history.operations, old] }).violations.map((v) => v.check), ['freshness']);
    // Through another proxy a serializable read may lag: etcd's followers answer the same way.
    const elsewhere = op(range('/a', ''), answer(3, [kv('/a', '1', 2)]), 13, 14, 'p2', 'c2');
    assert.deepEqual(checkHistory({ ...history, operations: [...history.operations, elsewhere] }).violations, []);
  });

  test('a revision that goes back for one client of one proxy (a stale answer may)', () => {
    const history = rightHistory();
    const back = op(range('/a', '', { revision: 0 }), answer(3, [kv('/a', '1', 2)]), 40, 41, 'p2', 'c3');
    const before = op(range('/a', '', { revision: 0 }), answer(4, [kv('/a', '2', 4, 2, 2)]), 30, 31, 'p2', 'c3');
    const found = checkHistory({ ...history, operations: [...history.operations, before, back] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['monotonic']);
    const staleBack = { ...back, result: { ...back.result, stale: true } } as OperationRecord;
    assert.deepEqual(checkHistory({ ...history, operations: [...history.operations, before, staleBack] }).violations, []);
  });

  test('a watch that misses an event, repeats one, or resumes at the wrong revision', () => {
    const history = rightHistory();
    const missing = watch([{ at: 1, revision: 4, events: [put('/a', '1', 2), put('/a', '2', 4, 2, 2)] }], { chain: 'x', end: { at: 5, reason: 'error' } });
    const repeated = watch([{ at: 1, revision: 3, events: [put('/a', '1', 2), put('/a', '1', 2)] }], { chain: 'y', end: { at: 5, reason: 'error' } });
    const gapFirst = watch([{ at: 1, revision: 2, events: [put('/a', '1', 2)] }], { chain: 'z', end: { at: 5, reason: 'error' } });
    const gapNext = watch([{ at: 7, revision: 5, events: [put('/a', '2', 4, 2, 2), del('/b', 5)] }], { chain: 'z', startRevision: 4, opened: 7 });
    const found = checkHistory({ ...history, watches: [...history.watches, missing, repeated, gapFirst, gapNext] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['watch', 'watch', 'watch']);
    assert.match(found[2]?.message ?? '', /resumed its watch at 4, not at 3/);
  });

  test('a watch closed at the end of the run without every event', () => {
    const history = rightHistory();
    const short = watch([{ at: 1, revision: 3, events: [put('/a', '1', 2), put('/b', '1', 3)] }], { chain: 'short' });
    const found = checkHistory({ ...history, watches: [...history.watches, short] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['watch']);
    assert.match(found[0]?.message ?? '', /without 2 events/);
  });

  test("a watch ended as compacted where etcd was not compacted, or at a revision it still needed", () => {
    const history = rightHistory();
    const notCompacted = watch([], { chain: 'a', end: { at: 5, reason: 'compacted', compactRevision: 4 } });
    const compact = op({ kind: 'compact', revision: 4 }, answer(5, []), 1, 2, 'etcd', 'admin');
    const tooEarly = watch([], { chain: 'b', startRevision: 4, end: { at: 5, reason: 'compacted', compactRevision: 4 } });
    const rightly = watch([], { chain: 'c', startRevision: 2, end: { at: 5, reason: 'compacted', compactRevision: 4 } });
    assert.deepEqual(checkHistory({ ...history, watches: [...history.watches, notCompacted] }).violations.map((v) => v.check), ['watch']);
    const withCompaction = { ...history, operations: [...history.operations, compact] };
    assert.deepEqual(checkHistory({ ...withCompaction, watches: [...history.watches, tooEarly] }).violations.map((v) => v.check), ['watch']);
    assert.deepEqual(checkHistory({ ...withCompaction, watches: [...history.watches, rightly] }).violations, []);
  });

  test('a proxy ends a watch as compacted at its log start while no member answers: allowed within such a fault, and only up to etcd\'s newest revision + 1', () => {
    const history = rightHistory();
    const timed = ETCD.map((entry) => ({ ...entry, at: entry.revision }));
    // A wiped proxy whose log starts at 4 (it took a snapshot at 3), while every member is down from 10 to 20.
    const atLogStart = watch([], { chain: 'a', startRevision: 3, end: { at: 15, reason: 'compacted', compactRevision: 4 } });
    const outage = { type: 'fault', at: 10, until: 20, name: 'bucket-fallback', target: 'p1' } as const;
    const during = { ...history, etcd: timed, faults: [outage], watches: [...history.watches, atLogStart] };
    assert.deepEqual(checkHistory(during).violations, []);
    // The same end with etcd up, or through no fault that takes every member down: etcd never compacted there.
    assert.deepEqual(checkHistory({ ...during, faults: [] }).violations.map((v) => v.check), ['watch']);
    assert.deepEqual(checkHistory({ ...during, faults: [{ ...outage, name: 'kill-member' }] }).violations.map((v) => v.check), ['watch']);
    // Past etcd's newest revision (5) + 1: no log start of a proxy can be there.
    const pastEtcd = watch([], { chain: 'b', startRevision: 3, end: { at: 15, reason: 'compacted', compactRevision: 7 } });
    assert.deepEqual(checkHistory({ ...during, watches: [...history.watches, pastEtcd] }).violations.map((v) => v.check), ['watch']);
    // A revision the stream still needed is refused as before.
    const needed = watch([], { chain: 'c', startRevision: 4, end: { at: 15, reason: 'compacted', compactRevision: 4 } });
    assert.deepEqual(checkHistory({ ...during, watches: [...history.watches, needed] }).violations.map((v) => v.check), ['watch']);
  });

  test('an acknowledged write that is not in etcd', () => {
    const history = rightHistory();
    const lost = op({ kind: 'put', key: '/c', value: 'x', lease: '0' }, answer(5, []), 30, 31);
    assert.deepEqual(checkHistory({ ...history, operations: [...history.operations, lost] }).violations.map((v) => v.check), ['writes']);
  });

  test('a key its user may not read, in an answer or a watch event', () => {
    const history = { ...rightHistory(), readable: { c1: [{ key: '/a', rangeEnd: '' }], w1: [{ key: '/a', rangeEnd: '' }] } };
    const checks = checkHistory(history).violations.map((v) => v.check);
    assert.ok(checks.length >= 2 && checks.every((check) => check === 'auth'), checks.join(','));
  });
  test('a progress notification that promises an event not yet delivered', () => {
    const history = rightHistory();
    const early = watch([{ at: 1, revision: 3, events: [] }, { at: 2, revision: 3, events: [put('/a', '1', 2), put('/b', '1', 3)] }], { chain: 'p', end: { at: 5, reason: 'error' } });
    const found = checkHistory({ ...history, watches: [...history.watches, early] }).violations;
    assert.deepEqual(found.map((v) => v.check), ['watch']);
    assert.match(found[0]?.message ?? '', /progress notification at 3 before put \/a@2/);
  });

  describe('leases kept alive through a proxy', () => {
    /** l put under lease 7 at revision 6 (outside the watches' range) (seen at 1 000 ms), deleted by its expiry at revision 7 (seen at `endedAt`). */
    const withLease = (endedAt: number | null, lease: Partial<LeaseRecord>): History => {
      const leased = { ...kv('l', 'x', 6), lease: '7' };
      const etcd: EtcdRevision[] = [...ETCD, { type: 'etcd', revision: 6, events: [{ type: 'put', kv: leased }], at: 1_000 }];
      if (endedAt !== null) etcd.push({ type: 'etcd', revision: 7, events: [del('l', 7)], at: endedAt });
      etcd.push({ type: 'etcd', revision: 8, events: [put('z', '1', 8)], at: 60_000 });
      const record: LeaseRecord = { type: 'lease', id: 99, client: 'h', via: 'p1', leaseId: '7', key: 'l', ttl: 3, granted: 900, keepAlives: [], stopped: null, ...lease };
      return { ...rightHistory(), etcd, leases: [record] };
    };
    const kept = [
      { sent: 2_000, answered: 2_010, ttl: 3 },
      { sent: 3_000, answered: 3_010, ttl: 3 },
    ];

    test('ended as its TTL said, after the keep-alives stopped', () => {
      assert.deepEqual(checkHistory(withLease(6_500, { keepAlives: kept, stopped: 4_000 })).violations, []);
    });

    test('ended while its keep-alives were answered', () => {
      const found = checkHistory(withLease(4_500, { keepAlives: kept, stopped: 4_000 })).violations;
      assert.deepEqual(found.map((v) => v.check), ['lease']);
      assert.match(found[0]?.message ?? '', /before the 3 s its renewal sent at 3000 ms promised/);
    });

    test('kept alive with a TTL after it had ended', () => {
      const late = [...kept, { sent: 7_000, answered: 7_010, ttl: 3 }];
      const found = checkHistory(withLease(6_500, { keepAlives: late, stopped: 8_000 })).violations;
      assert.ok(found.some((v) => /after it ended/.test(v.message)), found.map((v) => v.message).join('; '));
    });

    test('a keep-alive the client gave up on (a paused proxy) may still have renewed it: counted from the last one sent', () => {
      // Ended 7.5 s after the last answered renewal (3 s TTL, 2.5 s slack: 8 510 at the latest), 3.7 s after the last one sent.
      const found = checkHistory(withLease(9_700, { keepAlives: kept, stopped: 6_500, lastSent: 6_000 })).violations;
      assert.deepEqual(found, []);
      const stillOutlived = checkHistory(withLease(12_000, { keepAlives: kept, stopped: 6_500, lastSent: 6_000 })).violations;
      assert.deepEqual(stillOutlived.map((v) => v.check), ['lease']);
      assert.deepEqual(checkHistory(withLease(9_700, { keepAlives: kept, stopped: 6_500 })).violations.map((v) => v.check), ['lease'], 'without it, the same end is too late');
    });

    test('outlived its TTL after the keep-alives stopped, unless a member fault came between', () => {
      const found = checkHistory(withLease(12_000, { keepAlives: kept, stopped: 4_000 })).violations;
      assert.deepEqual(found.map((v) => v.check), ['lease']);
      assert.match(found[0]?.message ?? '', /outlived its 3 s TTL/);
      const faulted = { ...withLease(12_000, { keepAlives: kept, stopped: 4_000 }), faults: [{ type: 'fault' as const, at: 4_500, name: 'kill-member', target: 'm1', until: 6_000 }] };
      assert.deepEqual(checkHistory(faulted).violations, []);
    });
  });
});
