import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function exited(child: ChildProcess): boolean {
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
 * and its temporary directory. Once cleaned up, a process started late (the
 * walkthrough still running when Ctrl-C came) is killed at once.
 */
export class Processes {
  private readonly running = new Map<ChildProcess, string>();
  private closed = false;

  constructor(private readonly dir: string) {}

  spawn(name: string, child: ChildProcess): ChildProcess {
    if (this.closed) {
      child.kill('SIGKILL');
      throw new Error('the demo is stopping');
    }
    this.running.set(child, name);
    child.once('exit', () => this.running.delete(child));
    // A process that could not start at all (ENOENT) reports it here, not by throwing.
    child.once('error', () => this.running.delete(child));
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
