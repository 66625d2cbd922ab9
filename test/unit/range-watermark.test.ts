// Unit (no network): merging one watch per mirrored range into commits in
// revision order, and deciding which ranges the mirror's user lets it hold.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeEvent, type EncodedEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { RangeWatermark, HeldTooMuch, MAX_HELD_BYTES } from '../../src/mirror/range-watermark';
import { progressTrustFor } from '../../src/mirror/watch-stream';
import { decideScope } from '../../src/mirror/mirror-scope';
import { KeyRanges, rangeName } from '../../src/etcd/key-ranges';
import { ReadPermissions, type KeyPermission } from '../../src/auth/permissions';

const put = (key: string, revision: number, value = 'v'): EncodedEvent =>
  encodeEvent('PUT', encodeKeyValue({ key: Buffer.from(key), value: Buffer.from(value), create_revision: revision, mod_revision: revision, version: 1, lease: '0' }));
const keysOf = (taken: { events: EncodedEvent[] } | null): string[] => (taken?.events ?? []).map((e) => `${e.kv.key.toString()}@${e.kv.mod_revision}`);
const RELIABLE = { kind: 'reliable' } as const;

describe('RangeWatermark (unit)', () => {
  it('holds a range ahead of a quiet one, and commits both in revision order once the quiet one reports', () => {
    const merger = new RangeWatermark(2, 10, RELIABLE, 0);
    merger.events(0, [put('/a/1', 12), put('/a/2', 14)]);
    assert.equal(merger.take(), null, 'range 1 has said nothing past 10');
    assert.equal(merger.hasHeld(), true);
    merger.events(1, [put('/b/1', 13)]);
    assert.deepEqual(keysOf(merger.take()), ['/a/1@12', '/b/1@13'], 'up to the lower of the two');
    merger.streamProgress(15, 1);
    const rest = merger.take();
    assert.deepEqual(keysOf(rest), ['/a/2@14']);
    assert.equal(rest?.through, 15);
    assert.equal(merger.hasHeld(), false);
  });

  it('keeps the order of one revision range by range, and drops what is committed', () => {
    const merger = new RangeWatermark(2, 10, RELIABLE, 0);
    merger.events(1, [put('/b/1', 11), put('/b/2', 11)]);
    merger.events(0, [put('/a/1', 9), put('/a/1', 11)]);
    assert.deepEqual(keysOf(merger.take()), ['/a/1@11', '/b/1@11', '/b/2@11']);
  });

  it("believes a periodic notification for its own range at once, whatever etcd's version", () => {
    const merger = new RangeWatermark(2, 10, { kind: 'quiet', quietMs: 250, catchUpMs: 500 }, 0);
    merger.events(0, [put('/a/1', 12)]);
    merger.watchProgress(1, 12);
    assert.deepEqual(keysOf(merger.take()), ['/a/1@12']);
  });

  it('on an etcd whose progress answers may overtake events, counts one only after a quiet spell', () => {
    const merger = new RangeWatermark(2, 10, { kind: 'quiet', quietMs: 250, catchUpMs: 500 }, 0);
    merger.events(0, [put('/a/1', 12)]);
    merger.streamProgress(12, 600);
    assert.equal(merger.take(), null, 'a first answer is only a candidate');
    merger.streamProgress(12, 700);
    assert.equal(merger.take(), null, 'too soon after it');
    merger.events(1, [put('/b/1', 11)]);
    merger.streamProgress(12, 900);
    assert.deepEqual(keysOf(merger.take()), ['/b/1@11'], 'an event came between: the candidate starts over');
    merger.streamProgress(12, 1_200);
    assert.deepEqual(keysOf(merger.take()), ['/a/1@12'], 'quiet for 300 ms: believed');
  });

  it('waits for catch-up in rounds of 1 000 revisions before believing a stream answer', () => {
    const merger = new RangeWatermark(2, 10, { kind: 'quiet', quietMs: 250, catchUpMs: 500 }, 0);
    merger.expectCatchUp(5_000, 0);
    merger.events(0, [put('/a/1', 5_000)]);
    merger.streamProgress(5_010, 600);
    merger.streamProgress(5_010, 900);
    assert.equal(merger.take(), null, '5 000 revisions behind: 1 s of catch-up at least');
    merger.streamProgress(5_010, 1_100);
    merger.streamProgress(5_010, 1_400);
    assert.deepEqual(keysOf(merger.take()), ['/a/1@5000']);
  });

  it('gives up (to resume from the last commit) rather than hold without bound', () => {
    const merger = new RangeWatermark(2, 0, RELIABLE, 0);
    const big = 'x'.repeat(1024 * 1024);
    assert.throws(() => {
      for (let r = 1; r <= MAX_HELD_BYTES / big.length + 2; r += 1) merger.events(0, [put('/a/1', r, big)]);
    }, HeldTooMuch);
  });

  it("knows which etcd versions answer progress requests only once the stream's watches are synced", () => {
    for (const version of ['3.4.31', '3.4.35', '3.5.13', '3.5.21', '3.6.0', '4.0.0']) assert.equal(progressTrustFor(version).kind, 'reliable', version);
    for (const version of ['3.4.23', '3.4.30', '3.5.0', '3.5.12', '3.3.27', '', undefined]) assert.equal(progressTrustFor(version).kind, 'quiet', String(version));
  });
});

describe('the ranges a non-root mirror user lets it hold (unit)', () => {
  const b = (text: string): Buffer => Buffer.from(text);
  const read = (key: string, rangeEnd = ''): KeyPermission => ({ key: b(key), rangeEnd: b(rangeEnd), type: 'READ' });
  const names = (ranges: KeyRanges): string[] => ranges.ranges.map(rangeName);
  const apisixAndOther = new ReadPermissions([read('/apisix/', '/apisix0'), read('/other/', '/other0'), { key: b('/w/'), rangeEnd: b('/w0'), type: 'WRITE' }], false);

  it('without --mirror-prefix: exactly what the user may read, each run apart', () => {
    const decision = decideScope(KeyRanges.fromPrefixes([]), apisixAndOther);
    assert.deepEqual(names(decision.ranges), ['/apisix/*', '/other/*']);
    assert.equal(decision.empty, false);
    assert.deepEqual(decision.unmirrored, []);
  });

  it('joins permissions that touch or overlap into one run, and keeps single keys', () => {
    const permissions = new ReadPermissions([read('/a/', '/a/m'), read('/a/k', '/a0'), read('/key')], false);
    assert.deepEqual(names(decideScope(KeyRanges.fromPrefixes([]), permissions).ranges), ['/a/*', '[/key, /key\\u0000)']);
  });

  it('with --mirror-prefix: a prefix the user may not read whole is named and left to etcd; the others are mirrored', () => {
    const configured = KeyRanges.fromPrefixes([b('/apisix/'), b('/other/'), b('/secret/')]);
    const decision = decideScope(configured, apisixAndOther);
    assert.deepEqual(names(decision.ranges), ['/apisix/*', '/other/*']);
    assert.deepEqual(decision.unmirrored.map((u) => u.range), ['/secret/*']);
  });

  it('a user that reads every key ("\\0" with no end) is the whole keyspace', () => {
    const everything = new ReadPermissions([read('\0', '\0')], false);
    assert.equal(decideScope(KeyRanges.fromPrefixes([]), everything).ranges.whole, true);
  });

  it('root, or a user that reads nothing', () => {
    const configured = KeyRanges.fromPrefixes([]);
    assert.equal(decideScope(configured, new ReadPermissions([], true)).ranges.whole, true);
    const none = decideScope(configured, new ReadPermissions([], false));
    assert.equal(none.empty, true);
    assert.equal(none.unmirrored.length, 1);
  });

  it('stores and reads back its description', () => {
    const ranges = KeyRanges.fromRanges([{ start: b('/b/'), end: b('/b0') }, { start: b('/a/'), end: null }]);
    assert.equal(KeyRanges.parse(ranges.describe())?.describe(), ranges.describe());
    assert.equal(KeyRanges.parse('all')?.whole, true);
    assert.equal(KeyRanges.parse('zz-'), null);
    assert.equal(KeyRanges.fromPrefixes([b('/a/')]).includes(KeyRanges.fromPrefixes([b('/a/b/')])), true);
    assert.equal(KeyRanges.fromPrefixes([b('/a/')]).includes(KeyRanges.fromPrefixes([b('/b/')])), false);
  });
});
