// Benchmark: what one mirror commit costs the proxy's thread, LMDB opened as
// the store opens it (src/store/store-tables.ts: overlappingSync), side by
// side in one run: lmdb-js's synchronous commit (what the mirror does now)
// against its asynchronous transaction with one commit in flight (what a
// non-blocking mirror commit would use). Each commit writes `--batch` small
// values, as a watch response of that many events would. Reports commits/s
// and the share of the run the main thread was busy (event loop utilisation).
//
//   node --import tsx bench/lmdb-commit.ts [--commits 2000] [--batch 1] [--dir /tmp]
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { openStoreTables, type StoreTables } from '../src/store/store-tables';

const { values } = parseArgs({
  options: { commits: { type: 'string', default: '2000' }, batch: { type: 'string', default: '1' }, dir: { type: 'string', default: '/tmp' } },
});
const COMMITS = Number(values.commits);
const BATCH = Number(values.batch);
const VALUE = Buffer.alloc(200, 1);

interface Result {
  readonly mode: string;
  readonly commitsPerSecond: number;
  readonly mainThreadBusy: number;
}

/** Writes one commit's values into the current write transaction. */
function writeBatch(tables: StoreTables, commit: number): void {
  for (let i = 0; i < BATCH; i++) tables.kv['kv-a'].putSync(Buffer.from(`key-${commit}-${i}`), VALUE);
}

/** Yields to the event loop, as the mirror does between watch responses. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function measure(mode: string, commitAll: (tables: StoreTables) => Promise<void>): Promise<Result> {
  const path = mkdtempSync(join(values.dir, 'ecp-lmdb-commit-'));
  const tables = openStoreTables(path, false);
  try {
    const startUse = performance.eventLoopUtilization();
    const started = performance.now();
    await commitAll(tables);
    const seconds = (performance.now() - started) / 1000;
    const use = performance.eventLoopUtilization(startUse);
    return { mode, commitsPerSecond: Math.round(COMMITS / seconds), mainThreadBusy: Number(use.utilization.toFixed(2)) };
  } finally {
    await tables.root.close();
    rmSync(path, { recursive: true, force: true });
  }
}

const synchronous = async (tables: StoreTables): Promise<void> => {
  for (let commit = 0; commit < COMMITS; commit++) {
    tables.root.transactionSync(() => writeBatch(tables, commit));
    await nextTurn();
  }
};

const asynchronous = async (tables: StoreTables): Promise<void> => {
  for (let commit = 0; commit < COMMITS; commit++) await tables.root.transaction(() => writeBatch(tables, commit));
};

async function main(): Promise<void> {
  // lmdb-js's asynchronous callbacks come back through a thread-safe call that holds no reference on the loop.
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    const results: Result[] = [];
    for (let round = 0; round < 2; round++) {
      results.push(await measure('transactionSync', synchronous));
      results.push(await measure('transaction, one in flight', asynchronous));
    }
    console.log(`${COMMITS} commits of ${BATCH} value(s) each, in ${values.dir}`);
    console.table(results);
  } finally {
    clearInterval(keepAlive);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
