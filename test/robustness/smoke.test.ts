// Integration (real 3-member etcd, three proxies as the CLI, real clients): the robustness run's smoke mode,
// part of `npm test` (test/run.sh runs it alone, after the other files: it loads the machine). About 30 s
// of traffic and seeded faults, then the checker over the whole history. ECP_ROBUSTNESS_AUTH=1 runs it with
// etcd's auth on (test/run.sh does against etcd 3.5). ECP_ROBUSTNESS_SEED picks the seed;
// a failure names it and the history file, which `npm run robustness -- --replay FILE` checks again.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FAULTS } from './faults';
import { report, runRobustness } from './run';

const SMOKE_MS = Number(process.env.ECP_ROBUSTNESS_SMOKE_SECONDS ?? '30') * 1000;
/**
 * Every fault but bucket-fallback, which takes 6 to 19 s each (every member down, a proxy wiped, its
 * adoption and catch-up), most of a smoke run: `npm run robustness -- --faults bucket-fallback,...` runs it.
 * disk-full needs root for its tmpfs data dirs, and is skipped with a line saying why without.
 */
const SMOKE_FAULTS = FAULTS.filter((name) => name !== 'bucket-fallback');

test('half a minute of traffic and faults: nothing served wrong', { timeout: 300_000 }, async () => {
  const seed = Number(process.env.ECP_ROBUSTNESS_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const historyFile = join(tmpdir(), `ecp-robustness-${seed}.json`);
  const lines: string[] = [];
  const auth = process.env.ECP_ROBUSTNESS_AUTH === '1';
  const result = await runRobustness({ durationMs: SMOKE_MS, seed, faults: SMOKE_FAULTS, auth, historyFile, log: (line) => lines.push(line) });
  const text = `${lines.join('\n')}\n${report(result)}\nhistory: ${historyFile}`;
  assert.deepEqual(result.summary.violations.map((v) => `[${v.check}] ${v.message}`), [], text);
  assert.ok(result.history.faults.length >= 2, `only ${result.history.faults.length} faults were injected:\n${text}`);
  assert.ok(result.summary.answers > 500, `only ${result.summary.answers} answers were checked:\n${text}`);
  assert.ok(result.summary.watchEvents > 0, `no watch event was checked:\n${text}`);
  process.stdout.write(`# robustness smoke: ${report(result).split('\n')[0] ?? ''}\n`);
  // Kept only when a check failed (the assertions above name it): a passing run leaves nothing behind.
  rmSync(historyFile, { force: true });
});
