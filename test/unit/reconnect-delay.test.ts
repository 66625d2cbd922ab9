// Unit: the mirror's wait before trying etcd again is random between zero
// and a bound that doubles with each failure, up to a cap (full jitter), so a
// fleet that lost etcd together does not come back together.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fullJitterDelayMs } from '../../src/mirror/reconnect-delay';

describe('reconnect delay', () => {
  it('lies between zero and a bound that doubles with each failure, up to the cap', () => {
    const highest = (failures: number): number => fullJitterDelayMs(failures, 250, 5_000, () => 0.999_999);
    assert.deepEqual([0, 1, 2, 3, 4, 5, 10, 60].map(highest), [249, 499, 999, 1999, 3999, 4999, 4999, 4999]);
    for (const failures of [0, 3, 50]) assert.equal(fullJitterDelayMs(failures, 250, 5_000, () => 0), 0);
  });

  it('spreads a fleet: many proxies at the same failure count wait different times, over the whole bound', () => {
    const delays = Array.from({ length: 2_000 }, () => fullJitterDelayMs(4, 250, 5_000));
    assert.ok(delays.every((d) => d >= 0 && d < 4_000));
    const buckets = [0, 0, 0, 0];
    for (const d of delays) buckets[Math.floor(d / 1_000)] = (buckets[Math.floor(d / 1_000)] ?? 0) + 1;
    // Each quarter of the bound gets a fair share (expected 500 of 2000).
    assert.ok(buckets.every((n) => n > 350 && n < 650), JSON.stringify(buckets));
  });
});
