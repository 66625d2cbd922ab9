import type { ChildProcess } from 'node:child_process';

/**
 * Every process a test started, so that none outlives the test run even when
 * a test throws before its cleanup: on exit each is SIGKILLed by its own pid.
 */
const started = new Set<ChildProcess>();

export function trackProcess(child: ChildProcess): void {
  started.add(child);
  child.once('exit', () => started.delete(child));
}

export function untrackProcess(child: ChildProcess): void {
  started.delete(child);
}

process.once('exit', () => {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});
