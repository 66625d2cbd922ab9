// Unit (no network): how a proxy answers the liveness probe of a proxy in front of it, from what it knows of etcd.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tierProbeAnswer, type TierProbeEvidence } from '../../src/core/tier-probe';

const well: TierProbeEvidence = { quietForMs: 0, evidenceIntervalMs: 1_000, lost: false, tierStale: false, answeredEver: true };

describe('tierProbeAnswer', () => {
  it('vouches for a leader only on an answer within two of its own probe intervals', () => {
    assert.equal(tierProbeAnswer(well), 'leader');
    assert.equal(tierProbeAnswer({ ...well, quietForMs: 1_999 }), 'leader');
    // Quiet, not yet lost: etcd is asked, as for any Status.
    assert.equal(tierProbeAnswer({ ...well, quietForMs: 2_000 }), 'ask-upstream');
    assert.equal(tierProbeAnswer({ ...well, quietForMs: 2_999, evidenceIntervalMs: 500 }), 'ask-upstream');
  });

  it('says no leader at once when etcd is lost, or when its own upstream tier answers stale, whatever was heard', () => {
    assert.equal(tierProbeAnswer({ ...well, lost: true }), 'no-leader');
    assert.equal(tierProbeAnswer({ ...well, lost: true, quietForMs: Number.POSITIVE_INFINITY }), 'no-leader');
    assert.equal(tierProbeAnswer({ ...well, tierStale: true }), 'no-leader');
  });

  it('vouches for nothing before it has heard etcd at all (just started, or in a cycle of proxies): the probe goes on', () => {
    assert.equal(tierProbeAnswer({ ...well, answeredEver: false }), 'ask-upstream');
    assert.equal(tierProbeAnswer({ ...well, answeredEver: false, lost: true }), 'ask-upstream');
    assert.equal(tierProbeAnswer({ ...well, answeredEver: false, tierStale: true }), 'ask-upstream');
  });
});
