// Unit test (no network): the bytes the store says LMDB uses, read from the
// newest meta page, are what lmdb-js's documented statistics say, as the
// environment grows commit by commit.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStoreTables } from '../../src/store/store-tables';
import { usedBytes } from '../../src/store/store-upkeep';

test('usedBytes follows the last page of every commit, as getStats() reports it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ecp-used-bytes-'));
  const tables = openStoreTables(dir, false);
  try {
    const documented = (): number => {
      const stats = tables.root.getStats() as { pageSize: number; lastPageNumber: number };
      return (stats.lastPageNumber + 1) * stats.pageSize;
    };
    const seen = new Set<number>();
    for (let commit = 0; commit < 40; commit += 1) {
      tables.root.transactionSync(() => {
        for (let i = 0; i < 50; i += 1) tables.kv['kv-a'].putSync(Buffer.from(`key-${commit}-${i}`), Buffer.alloc(300, commit));
      });
      assert.equal(usedBytes(tables), documented(), `after commit ${commit}`);
      seen.add(usedBytes(tables));
    }
    assert.ok(seen.size > 10, `the environment grew over the commits (${seen.size} sizes seen)`);
  } finally {
    await tables.root.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
