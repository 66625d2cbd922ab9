import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyRanges, prefixEnd } from '../../src/etcd/key-ranges';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');
const ZERO = Buffer.from([0]);
const NONE = Buffer.alloc(0);

describe('KeyRanges (unit)', () => {
  it('ends a prefix where etcd does: last byte below 0xff incremented, trailing 0xff dropped', () => {
    assert.deepEqual(prefixEnd(b('/apisix')), b('/apisiy'));
    assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff, 0xff])), b('b'));
    assert.equal(prefixEnd(Buffer.from([0xff, 0xff])), null);
  });

  it('is the whole keyspace with no prefix or an empty one', () => {
    for (const ranges of [KeyRanges.fromPrefixes([]), KeyRanges.fromPrefixes([b('/a'), NONE])]) {
      assert.equal(ranges.whole, true);
      assert.equal(ranges.describe(), 'all');
      assert.equal(ranges.coversRequest(ZERO, ZERO), true);
      assert.deepEqual(KeyRanges.toRequest(ranges.watchRange()), { key: ZERO, range_end: ZERO });
    }
  });

  it('merges nested and touching prefixes', () => {
    const ranges = KeyRanges.fromPrefixes([b('/b/'), b('/a/x'), b('/a/'), b('/c')]);
    assert.deepEqual(
      ranges.ranges.map((r) => [r.start.toString('latin1'), r.end?.toString('latin1')]),
      [['/a/', '/a0'], ['/b/', '/b0'], ['/c', '/d']],
    );
    // [/a, /b) and [/b, /c) touch once written as prefixes "a" and "b".
    assert.equal(KeyRanges.fromPrefixes([b('b'), b('a')]).ranges.length, 1);
  });

  it('covers a request only when every key it names is mirrored', () => {
    const ranges = KeyRanges.fromPrefixes([b('/apisix/'), b('/other/')]);
    assert.equal(ranges.coversRequest(b('/apisix/routes/1'), NONE), true, 'one key inside');
    assert.equal(ranges.coversRequest(b('/apisix'), NONE), false, 'the prefix without its slash is outside');
    assert.equal(ranges.coversRequest(b('/apisix/'), b('/apisix0')), true, 'the whole prefix');
    assert.equal(ranges.coversRequest(b('/apisix/routes/'), b('/apisix/routes0')), true, 'a prefix inside');
    assert.equal(ranges.coversRequest(b('/apisix/'), b('/other0')), false, 'spans the gap');
    assert.equal(ranges.coversRequest(b('/apisix/'), ZERO), false, 'from a key to the end');
    assert.equal(ranges.coversRequest(b('/x'), b('/a')), true, 'inverted: names no key');
    assert.equal(KeyRanges.fromPrefixes([Buffer.from([0xff])]).coversRequest(Buffer.from([0xff, 1]), ZERO), true, 'to the end of an open prefix');
  });

  it('watches one range from the first prefix to the end of the last, and knows what touches it', () => {
    const ranges = KeyRanges.fromPrefixes([b('/b/'), b('/d/')]);
    assert.deepEqual(KeyRanges.toRequest(ranges.watchRange()), { key: b('/b/'), range_end: b('/d0') });
    assert.equal(ranges.contains(b('/c/gap')), false);
    assert.equal(ranges.touchesWatch(b('/c/gap'), NONE), true, 'a gap key is watched (and dropped)');
    assert.equal(ranges.touchesWatch(b('/a'), NONE), false);
    assert.equal(ranges.touchesWatch(b('/d0'), NONE), false, 'the end is exclusive');
    assert.equal(ranges.touchesWatch(b('/a'), b('/b/')), false, 'a range ending where the watch starts');
    assert.equal(ranges.touchesWatch(b('/a'), b('/b/1')), true);
    assert.equal(ranges.touchesWatch(b('/e'), ZERO), false);
    assert.equal(ranges.touchesWatch(b('/'), ZERO), true);
  });

  it('describes its ranges so a changed configuration is noticed', () => {
    assert.notEqual(KeyRanges.fromPrefixes([b('/a/')]).describe(), KeyRanges.fromPrefixes([b('/a/'), b('/b/')]).describe());
    assert.equal(KeyRanges.fromPrefixes([b('/a/'), b('/a/x')]).describe(), KeyRanges.fromPrefixes([b('/a/')]).describe());
  });
});
