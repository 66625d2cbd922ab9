import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freezeProcess, trackProcess, untrackProcess } from './processes';
import { sleep, until } from './until';

/** A real etcd server on loopback, started by a test and stopped by pid. */
export interface EtcdServer {
  readonly name: string;
  /** "http://127.0.0.1:PORT" */
  readonly clientUrl: string;
  /** "127.0.0.1:PORT", as etcdctl's --endpoints takes it. */
  readonly clientAddress: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly pid: number;
  /** Everything etcd wrote to stderr, for a failing test's message. */
  output(): string;
  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT...) to this etcd's pid. */
  signal(signal: NodeJS.Signals): void;
  /** SIGSTOP, resolved once every thread of etcd has stopped. */
  freeze(): Promise<void>;
  /** Starts this etcd again on the same ports and data dir after it exited. */
  restart(): Promise<void>;
  /** False once its process has exited (after a SIGKILL, say). */
  running(): boolean;
  /** Stops etcd (SIGTERM, then SIGKILL) and removes its data dir. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;

/** Ports this process has handed out: the kernel may offer a closed one again at once. */
const handedOut = new Set<number>();

/**
 * A free loopback port, never one this process handed out before (a cluster
 * takes several in a row, and two members given one port fail to start).
 * Another process may still take it before use; tests tolerate that rarely.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await anyFreePort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Where a test finds etcd's own programs: ETCD_BIN_DIR names a directory
 * holding `etcd` and `etcdctl` (test/run.sh sets it to run the differential
 * files against etcd 3.5 too); without it, PATH.
 */
export function etcdTool(name: 'etcd' | 'etcdctl'): string {
  const dir = process.env.ETCD_BIN_DIR;
  return dir === undefined || dir === '' ? name : join(dir, name);
}

export function etcdBinary(): string {
  const binary = etcdTool('etcd');
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined) {
    const where = binary === 'etcd' ? 'on PATH' : `at ${binary} (ETCD_BIN_DIR)`;
    throw new Error(`etcd binary not found ${where}: install Debian's etcd-server and etcd-client (apt-get install -y etcd-server etcd-client)`);
  }
  return binary;
}

export interface EtcdOptions {
  readonly name?: string;
  /** Extra etcd flags, e.g. ['--auto-compaction-retention=1']. */
  readonly extraArgs?: readonly string[];
  /** Start from a copy of this data dir (another etcd's, stopped), e.g. with --force-new-cluster to read what a dead cluster held. */
  readonly copyOf?: string;
  /** TLS on the client port, with client certificates required (etcd's --client-cert-auth). */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
}

/**
 * Starts etcd on free ports. Another test file may take a port between our
 * probe and etcd's bind; etcd then exits with "address already in use" and
 * we try again on fresh ports.
 */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startEtcdOnce(options);
    } catch (error) {
      if (attempt >= 5 || !(error instanceof Error) || !error.message.includes('address already in use')) throw error;
    }
  }
}

async function startEtcdOnce(options: EtcdOptions): Promise<EtcdServer> {
  const binary = etcdBinary();
  const name = options.name ?? 'default';
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const tls = options.tls;
  const clientUrl = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-etcd-'));
  if (options.copyOf !== undefined) cpSync(options.copyOf, join(dataDir, 'data'), { recursive: true });
  const tlsArgs = tls === undefined ? [] : [`--cert-file=${tls.cert}`, `--key-file=${tls.key}`, `--trusted-ca-file=${tls.ca}`, '--client-cert-auth'];
  const args = [
    `--name=${name}`,
    `--data-dir=${join(dataDir, 'data')}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${name}=${peerUrl}`,
    '--logger=zap',
    '--log-outputs=stderr',
    '--log-level=warn',
    ...tlsArgs,
    ...(options.extraArgs ?? []),
  ];
  let child: ChildProcess;
  let stderr = '';
  const launch = async (): Promise<void> => {
    child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    trackProcess(child);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-20_000);
    });
    await waitUntilHealthy(child, clientUrl, () => stderr, tls === undefined ? undefined : () => healthyOverTls(clientUrl, tls));
  };
  try {
    await launch();
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }

  const server: EtcdServer = {
    name,
    clientUrl,
    clientAddress: `127.0.0.1:${clientPort}`,
    peerUrl,
    dataDir,
    get pid() {
      return child.pid ?? -1;
    },
    output: () => stderr,
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    freeze: () => freezeProcess(child),
    running: () => child.exitCode === null && child.signalCode === null,
    async restart() {
      if (child.exitCode === null && child.signalCode === null) throw new Error('etcd is still running');
      await launch();
    },
    async stop() {
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return server;
}

/** etcd's /health over TLS with a client certificate (fetch cannot present one). */
function healthyOverTls(clientUrl: string, tls: { cert: string; key: string; ca: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const request = httpsGet(`${clientUrl}/health`, { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key), timeout: 1000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (c: string) => (body += c));
      response.on('end', () => resolve(body.includes('"health":"true"')));
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}

export async function waitUntilHealthy(child: ChildProcess, clientUrl: string, output: () => string, probe?: () => Promise<boolean>): Promise<void> {
  const healthy = probe ?? (() => answersHealth(clientUrl));
  try {
    await until(
      () => `etcd at ${clientUrl} to be healthy:\n${output()}`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`etcd exited early (${child.exitCode ?? child.signalCode}):\n${output()}`);
        return healthy().catch(() => false);
      },
      READY_TIMEOUT_MS,
      100,
    );
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

/** etcd's own /health says it has a leader and serves. */
export async function answersHealth(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false; // not accepting yet
  }
}

/** SIGTERM, then SIGKILL after a grace period; resolves once the pid is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    untrackProcess(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGCONT'); // a paused process cannot act on SIGTERM
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  untrackProcess(child);
}

/** Kept here too: tests have always imported it from this file. */
export { sleep };
