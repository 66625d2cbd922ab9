import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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

/** Processes the safety net below killed (not the test that started them). */
const killedByNet = new WeakSet<ChildProcess>();

/** True when the process was SIGKILLed because the file ended with it still running. */
export function killedBySafetyNet(child: ChildProcess): boolean {
  return killedByNet.has(child);
}

function killAll(): void {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      killedByNet.add(child);
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

/**
 * Sends SIGSTOP and waits until every thread of the process is stopped. kill()
 * returns before the threads of a Go program have stopped; on a loaded machine
 * etcd has been seen answering a request sent a few milliseconds after it.
 */
export async function freezeProcess(child: ChildProcess): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) throw new Error('cannot freeze a process that is not running');
  child.kill('SIGSTOP');
  await allStopped(pid);
}

/** freezeProcess by pid, for a process this one did not start itself (a proxy's worker). */
export async function freezePid(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  await allStopped(pid);
}

/** The pids of the processes `pid` started and that still run (from /proc; none when it is gone). */
export function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) => {
      try {
        return readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter((text) => text !== '').map(Number);
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}

/**
 * The children of a `--workers` primary that run the proxy's CLI. Under tsx a
 * process whose transform cache is cold also has esbuild's service as a
 * child, for as long as it lives: counting every child, a test waiting for
 * two serving processes waited for ever.
 */
export function servingChildren(primary: number): number[] {
  return childPids(primary).filter((pid) => {
    try {
      return /\/cli\.(ts|js)\0/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
}

async function allStopped(pid: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!allThreadsStopped(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not stop within 5 s of SIGSTOP`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function allThreadsStopped(pid: number): boolean {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((task) => {
    try {
      // The state is the first field after the command, which is in parentheses and may hold spaces.
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
    } catch {
      return true; // the thread has exited
    }
  });
}
