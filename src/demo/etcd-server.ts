import { spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Processes } from './processes';

/** Where the demo's etcd comes from: on PATH, installed now, or the one line to run. */
export type EtcdBinary = { readonly found: true; readonly version: string; readonly installed: boolean } | { readonly found: false; readonly instruction: string };

const INSTRUCTION = "etcd not found: run 'sudo apt-get install -y etcd-server' (or put etcd 3.4+ on PATH), then npm run demo again";

function etcdVersion(): string | null {
  const probe = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) return null;
  return /etcd Version: (\S+)/.exec(probe.stdout)?.[1] ?? 'unknown';
}

/** etcd on PATH; when missing, Debian's etcd-server installed as `npm test` does (as root with apt-get), else how to get it. */
export function findOrInstallEtcd(say: (text: string) => void): EtcdBinary {
  const version = etcdVersion();
  if (version !== null) return { found: true, version, installed: false };
  const canInstall = process.getuid?.() === 0 && spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!canInstall) return { found: false, instruction: INSTRUCTION };
  say("etcd not found: installing Debian's etcd-server (apt-get, as root)");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'etcd-server']]) {
    const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (run.status !== 0) return { found: false, instruction: `apt-get ${args.join(' ')} failed; ${INSTRUCTION}` };
  }
  const installed = etcdVersion();
  return installed === null ? { found: false, instruction: INSTRUCTION } : { found: true, version: installed, installed: true };
}

/** A throwaway single-member etcd on loopback. */
export interface DemoEtcd {
  readonly clientUrl: string;
  pid(): number;
  /** SIGKILL: the outage, as a crashed machine causes it. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data, healthy when this resolves. */
  start(): Promise<void>;
}

export function demoEtcd(processes: Processes, dir: string, clientPort: number, peerPort: number): DemoEtcd {
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name=demo',
    `--data-dir=${join(dir, 'data')}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=demo=${peerUrl}`,
    '--logger=zap',
    '--log-level=warn',
  ];
  let child: ChildProcess | null = null;
  return {
    clientUrl,
    pid: () => child?.pid ?? -1,
    async kill() {
      if (child === null) return;
      const running = child;
      child = null;
      await processes.kill(running, 'SIGKILL');
    },
    async start() {
      child = await processes.launch('etcd', 'etcd', args, join(dir, 'etcd.log'), () => healthy(clientUrl), 20_000);
    },
  };
}

async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
    return ((await response.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}
