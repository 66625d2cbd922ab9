// Unit: the cache of encoded mirror answers (no network).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RESPONSE_CACHE_MAX_ENTRIES, ResponseCache } from '../../src/api/response-cache';

describe('ResponseCache', () => {
  it('answers the same request bytes at the same revision only', () => {
    const cache = new ResponseCache();
    cache.set(Buffer.from('req'), 5, Buffer.from('answer@5'));
    assert.equal(cache.get(Buffer.from('req'), 5)?.toString(), 'answer@5');
    assert.equal(cache.get(Buffer.from('other'), 5), undefined);
    assert.equal(cache.get(Buffer.from('req'), 6), undefined, 'a newer revision must not see an older answer');
    assert.equal(cache.get(Buffer.from('req'), 5), undefined, 'a stale entry is dropped');
  });

  it('forgets the least recently used beyond its bound, and everything on clear', () => {
    const cache = new ResponseCache();
    for (let i = 0; i <= RESPONSE_CACHE_MAX_ENTRIES; i += 1) {
      cache.set(Buffer.from(`r${i}`), 1, Buffer.from('x'));
      if (i === 10) assert.ok(cache.get(Buffer.from('r0'), 1)); // keeps r0 recent
    }
    assert.equal(cache.size, RESPONSE_CACHE_MAX_ENTRIES);
    assert.ok(cache.get(Buffer.from('r0'), 1), 'recently used entry kept');
    assert.equal(cache.get(Buffer.from('r1'), 1), undefined, 'least recently used entry evicted');
    cache.clear();
    assert.equal(cache.size, 0);
  });
});
