import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** A loopback port free now (the demo's etcd and proxy never take the usual 2379 and 23790, which may be in use). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

const KILL_AFTER_MS = 5_000;

/** Signals a pid that may have exited a moment ago (then there is nothing to do). */
function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * Everything the demo started: its processes, each stopped by its own pid,
 * and its temporary directory. Once cleaned up, nothing more is started (the
 * walkthrough may still be running when Ctrl-C comes).
 */
export class Processes {
  private readonly running = new Map<ChildProcess, string>();
  private closed = false;

  constructor(private readonly dir: string) {}

  /**
   * Starts `command` with its output appended to `logFile`, and resolves once
   * `ready` says so; rejects if it exits first or is not ready in time.
   */
  async launch(name: string, command: string, args: readonly string[], logFile: string, ready: () => Promise<boolean>, timeoutMs: number): Promise<ChildProcess> {
    if (this.closed) throw new Error('the demo is stopping');
    const log = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    this.running.set(child, name);
    child.once('exit', () => this.running.delete(child));
    // A process that could not start at all (ENOENT) reports it here, not by throwing.
    let failed: Error | null = null;
    child.once('error', (error) => {
      failed = error;
      this.running.delete(child);
    });
    const deadline = Date.now() + timeoutMs;
    while (!(await ready())) {
      if (failed !== null) throw new Error(`${name} could not start: ${(failed as Error).message}`);
      if (exited(child)) throw new Error(`${name} exited at start (${child.exitCode ?? child.signalCode}); see ${logFile}`);
      if (Date.now() > deadline) throw new Error(`${name} not ready within ${timeoutMs / 1000} s; see ${logFile}`);
      await sleep(20);
    }
    return child;
  }

  /** Sends `signal` and waits for the exit; SIGKILL if it has not exited within 5 s. */
  async kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
    if (exited(child) || child.pid === undefined) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    signalPid(child.pid, signal);
    const timer = setTimeout(() => {
      if (!exited(child) && child.pid !== undefined) signalPid(child.pid, 'SIGKILL');
    }, KILL_AFTER_MS);
    await gone;
    clearTimeout(timer);
  }

  /** What is still running, by name and pid (for the line that says what was cleaned up). */
  describe(): string[] {
    return [...this.running].map(([child, name]) => `${name} (pid ${child.pid ?? '?'})`);
  }

  async cleanUp(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.running.keys()].map((child) => this.kill(child, 'SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
