import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Processes } from './processes';

/** The proxy under demonstration: this very CLI's `start`, as its own process, so a restart is a real one. */
export interface DemoProxy {
  readonly address: string;
  readonly logFile: string;
  pid(): number;
  /** Spawns it; resolves once it answers HTTP on its port, with when it was spawned and when it first answered (performance.now()). */
  start(): Promise<{ readonly spawnedAt: number; readonly answeredAt: number }>;
  /** SIGTERM, as systemd or Kubernetes stops it; resolves on exit. */
  stop(): Promise<void>;
}

export function demoProxy(processes: Processes, dir: string, port: number, etcdUrl: string, flags: readonly string[]): DemoProxy {
  const address = `127.0.0.1:${port}`;
  const logFile = join(dir, 'proxy.log');
  const args = ['start', '--endpoints', etcdUrl, '--listen-addr', address, '--data-dir', join(dir, 'proxy-data'), ...flags];
  let child: ChildProcess | null = null;
  return {
    address,
    logFile,
    pid: () => child?.pid ?? -1,
    async start() {
      const spawnedAt = performance.now();
      // The same entry point and loader flags this process runs with (tsx, or dist/ after a build).
      child = await processes.launch('proxy', process.execPath, [...process.execArgv, cliEntry(), ...args], logFile, () => answers(`http://${address}/readyz`), 30_000);
      return { spawnedAt, answeredAt: performance.now() };
    },
    async stop() {
      if (child === null) return;
      const running = child;
      child = null;
      await processes.kill(running, 'SIGTERM');
    },
  };
}

function cliEntry(): string {
  const entry = process.argv[1];
  if (entry === undefined) throw new Error('cannot tell which script runs this CLI');
  return entry;
}

async function answers(url: string): Promise<boolean> {
  try {
    await (await fetch(url, { signal: AbortSignal.timeout(1000) })).arrayBuffer();
    return true;
  } catch {
    return false;
  }
}
