// Unit: finding etcd's compaction point by bisection (no network).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findCompactRevision } from '../../src/mirror/compaction-tracker';

describe('findCompactRevision', () => {
  it('finds the lowest revision that is not compacted, in few probes', async () => {
    for (const compactPoint of [2, 3, 57, 999, 1000]) {
      let probes = 0;
      const isCompacted = async (revision: number): Promise<boolean> => {
        probes += 1;
        return revision < compactPoint;
      };
      assert.equal(await findCompactRevision(isCompacted, 1, 1000), compactPoint);
      assert.ok(probes <= 12, `${probes} probes`);
    }
  });

  it('gives up when the upstream does not answer or everything is compacted', async () => {
    assert.equal(await findCompactRevision(async () => undefined, 1, 100), undefined);
    assert.equal(await findCompactRevision(async () => true, 1, 100), undefined);
  });
});
