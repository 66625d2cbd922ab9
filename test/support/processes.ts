import type { ChildProcess } from 'node:child_process';
import { after } from 'node:test';

/**
 * Every process a test started, so that none outlives the test run even when
 * a test throws before its cleanup: on exit each is SIGKILLed by its own pid.
 */
const started = new Set<ChildProcess>();

export function trackProcess(child: ChildProcess): void {
  started.add(child);
  child.once('exit', () => started.delete(child));
}

function killAll(): void {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

// After the last test of a file, even one whose setup failed half-way (one of
// two etcds started), nothing it started may keep the file from ending.
// (Only under the test runner: benchmarks import this too.)
if (process.env.NODE_TEST_CONTEXT !== undefined) after(killAll);

export function untrackProcess(child: ChildProcess): void {
  started.delete(child);
}

process.once('exit', killAll);
