// Unit: what an edge knows of its tier's stale state follows the stale mark on
// the tier's answers, is passed between processes without echo, and is asked
// again each second only while stale.
import assert from 'node:assert/strict';
import { Metadata } from '@grpc/grpc-js';
import { describe, it, mock } from 'node:test';
import { STALE_HEADER } from '../../src/etcd/metadata';
import { TIER_RECHECK_MS, TierStaleness } from '../../src/upstream/tier-stale';

function headers(stale: boolean): Metadata {
  const metadata = new Metadata();
  if (stale) metadata.set(STALE_HEADER, 'true');
  return metadata;
}

describe('TierStaleness (unit)', () => {
  it('is stale from the first marked answer until an unmarked one, told once each way', () => {
    const tier = new TierStaleness();
    const told: (number | null)[] = [];
    tier.onChange((since) => told.push(since));
    assert.equal(tier.isStale(), false);
    tier.noteAnswer(headers(true));
    const since = tier.staleSince();
    assert.ok(since !== null && tier.isStale());
    tier.noteAnswer(headers(true));
    assert.equal(tier.staleSince(), since, 'a second marked answer keeps the first instant');
    tier.noteAnswer(null);
    assert.equal(tier.isStale(), true, 'an answer whose headers never came says nothing');
    tier.noteAnswer(headers(false));
    assert.equal(tier.isStale(), false);
    assert.deepEqual(told, [since, null]);
    tier.close();
  });

  it('adopts what another process learned without telling it back', () => {
    const tier = new TierStaleness();
    let told = 0;
    tier.onChange(() => (told += 1));
    tier.adopt(1234);
    assert.equal(tier.staleSince(), 1234);
    tier.adopt(null);
    assert.equal(tier.isStale(), false);
    assert.equal(told, 0);
    tier.close();
  });

  it('asks again each second while stale, and not once fresh', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const tier = new TierStaleness();
      let asked = 0;
      tier.recheckWith(() => {
        asked += 1;
        return Promise.reject(new Error('the tier does not answer'));
      });
      mock.timers.tick(3 * TIER_RECHECK_MS);
      assert.equal(asked, 0, 'nothing asked while fresh');
      tier.noteAnswer(headers(true));
      mock.timers.tick(3 * TIER_RECHECK_MS);
      assert.equal(asked, 3);
      tier.noteAnswer(headers(false));
      mock.timers.tick(3 * TIER_RECHECK_MS);
      assert.equal(asked, 3, 'nothing asked once fresh again');
      tier.close();
    } finally {
      mock.timers.reset();
    }
  });
});
