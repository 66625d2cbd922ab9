// Unit: the cache of encoded mirror answers (no network).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResponseCache, type Validity } from '../../src/core/response-cache';

const prefix = (key: string, end: string | null): Validity => ({ kind: 'spans', spans: [{ key: Buffer.from(key), end: end === null ? null : Buffer.from(end), single: false }] });
const single = (key: string): Validity => ({ kind: 'spans', spans: [{ key: Buffer.from(key), end: null, single: true }] });
const header = (revision: number) => (): Buffer => Buffer.from(`H${revision}|`);

describe('ResponseCache', () => {
  it('answers the same request bytes with the same answer object while nothing moved', () => {
    const cache = new ResponseCache(1024);
    const made = cache.set('range', 'req', 5, prefix('a', 'b'), header(5)(), Buffer.from('body'));
    assert.equal(made.toString(), 'H5|body');
    assert.equal(cache.get('range', 'req', 5, header(5)), made, 'the very same buffer: the JSON form can be kept with it');
    assert.equal(cache.get('range', 'other', 5, header(5)), undefined);
    assert.equal(cache.get('txn', 'req', 5, header(5)), undefined, 'kinds do not share entries');
  });

  it('keeps the body across revisions that did not touch its keys, with the new header in front', () => {
    const cache = new ResponseCache(1024);
    cache.set('range', 'req', 5, prefix('a', 'b'), header(5)(), Buffer.from('body'));
    cache.invalidate([Buffer.from('b'), Buffer.from('zz')]);
    assert.equal(cache.get('range', 'req', 7, header(7))?.toString(), 'H7|body');
    cache.invalidate([Buffer.from('a1')]);
    assert.equal(cache.get('range', 'req', 8, header(8)), undefined, 'a change under its range drops it');
  });

  it('reads single keys and open-ended ranges as etcd does', () => {
    const cache = new ResponseCache(1024);
    cache.set('range', 'one', 1, single('k'), header(1)(), Buffer.from('x'));
    cache.set('range', 'all', 1, prefix('m', null), header(1)(), Buffer.from('y'));
    cache.invalidate([Buffer.from('k0')]);
    assert.ok(cache.get('range', 'one', 2, header(2)), 'k0 is not the single key k');
    cache.invalidate([Buffer.from('zzzz')]);
    assert.equal(cache.get('range', 'all', 3, header(3)), undefined, 'an open range reaches every key above it');
    cache.invalidate([Buffer.from('k')]);
    assert.equal(cache.get('range', 'one', 4, header(4)), undefined);
  });

  it('never puts a lower revision in front of a kept answer: the store went back (etcd restored), the answer is gone', () => {
    const cache = new ResponseCache(1024);
    cache.set('range', 'req', 110, prefix('a', 'b'), header(110)(), Buffer.from('old-body'));
    assert.equal(cache.get('range', 'req', 0, header(0)), undefined, 'a wiped store (revision 0) keeps no answer of before');
    assert.equal(cache.get('range', 'req', 110, header(110)), undefined, 'dropped, not only skipped');
  });

  it('keeps revision-exact answers only at their revision', () => {
    const cache = new ResponseCache(1024);
    const made = cache.set('txn', 'req', 5, { kind: 'revision-exact' }, header(5)(), Buffer.from('body'));
    assert.equal(cache.get('txn', 'req', 5, header(5)), made);
    assert.equal(cache.get('txn', 'req', 6, header(6)), undefined);
  });

  it('keeps the JSON form with the answer it was made from, and counts it', () => {
    const cache = new ResponseCache(1024);
    const made = cache.set('range', 'req', 5, prefix('a', 'b'), header(5)(), Buffer.from('body'));
    let calls = 0;
    const make = (): Buffer => {
      calls += 1;
      return Buffer.from('{"json":true}');
    };
    const before = cache.usedBytes;
    assert.equal(cache.json(made, make).toString(), '{"json":true}');
    assert.equal(cache.json(made, make).toString(), '{"json":true}');
    assert.equal(calls, 1);
    assert.equal(cache.usedBytes, before + '{"json":true}'.length);
    const moved = cache.get('range', 'req', 6, header(6));
    assert.ok(moved !== undefined && moved !== made);
    cache.json(moved, make);
    assert.equal(calls, 2, 'a new header makes a new JSON text');
    assert.equal(cache.json(Buffer.from('not kept'), make).toString(), '{"json":true}');
  });

  it('stays within its byte budget, least recently used first, and keeps nothing with budget 0', () => {
    const cache = new ResponseCache(200); // 18 bytes an entry: header+body, and the body alone
    for (let i = 0; i < 20; i += 1) {
      cache.set('range', `r${i}`, 1, single(`k${i}`), Buffer.alloc(2), Buffer.alloc(8));
      if (i === 5) assert.ok(cache.get('range', 'r0', 1, header(1)));
      assert.ok(cache.usedBytes <= 200);
    }
    assert.ok(cache.get('range', 'r19', 1, header(1)), 'the newest is kept');
    assert.equal(cache.get('range', 'r1', 1, header(1)), undefined, 'an old one is evicted');
    assert.equal(cache.set('range', 'big', 1, single('b'), Buffer.alloc(2), Buffer.alloc(300)).length, 302, 'too big: answered, not kept');
    assert.equal(cache.get('range', 'big', 1, header(1)), undefined);
    const off = new ResponseCache(0);
    off.set('range', 'req', 1, single('k'), Buffer.alloc(1), Buffer.alloc(1));
    assert.equal(off.size, 0);
    cache.clear();
    assert.equal(cache.size, 0);
    assert.equal(cache.usedBytes, 0);
  });
});
