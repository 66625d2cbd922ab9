import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { createMetrics, type Metrics } from '../../src/metrics';
import { startProxy, type RunningProxy } from '../../src/proxy';
import { freePort, stopChild } from './etcd';
import { killedBySafetyNet, trackProcess } from './processes';
import { until } from './until';

export const REPO_ROOT = resolve(__dirname, '..', '..');
export const CLI = join(REPO_ROOT, 'src', 'cli.ts');

/** A proxy running inside the test process, on a free port with a temporary data dir. */
export interface TestProxy {
  readonly proxy: RunningProxy;
  readonly metrics: Metrics;
  /** "127.0.0.1:PORT" */
  readonly address: string;
  readonly url: string;
  /** Resolves once the mirror has committed at least this revision (default: synced at all). */
  mirrored(revision?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface TestProxyOptions {
  /** Use (and keep) this data dir instead of a fresh temporary one. */
  readonly dataDir?: string;
}

export async function startTestProxy(
  endpoints: readonly string[],
  extraArgs: readonly string[] = [],
  options: TestProxyOptions = {},
): Promise<TestProxy> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'ecp-proxy-'));
  if (TEST_WORKERS !== null) return startWorkersProxy(endpoints, extraArgs, dataDir, options.dataDir === undefined);
  const config = loadConfig({
    argv: [...(endpoints.length === 0 ? [] : ['--endpoints', endpoints.join(',')]), '--listen-addr', '127.0.0.1:0', '--data-dir', dataDir, '--shutdown-grace', '2s', ...extraArgs],
    env: {},
  });
  const metrics = createMetrics(new Registry());
  const log = pino({ level: process.env.TEST_PROXY_LOG_LEVEL ?? 'silent' });
  const proxy = await startProxy({ config, log, metrics });
  const address = `127.0.0.1:${proxy.address.port}`;
  return {
    proxy,
    metrics,
    address,
    url: `http://${address}`,
    async mirrored(revision = 1) {
      await until(`the mirror to reach revision ${revision}`, async () => ((await metrics.mirrorRevision.get()).values[0]?.value ?? 0) >= revision, 20_000, 25);
    },
    async stop() {
      await proxy.close();
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * `ECP_TEST_WORKERS=N`: the tests that use a proxy only through its port run
 * it as the CLI with `--workers N` instead (test/run.sh runs those files a
 * second time so): the same clients, the same assertions, N serving
 * processes over one mirror.
 */
const TEST_WORKERS = process.env.ECP_TEST_WORKERS === undefined || process.env.ECP_TEST_WORKERS === '' ? null : process.env.ECP_TEST_WORKERS;

async function startWorkersProxy(endpoints: readonly string[], extraArgs: readonly string[], dataDir: string, removeDataDir: boolean): Promise<TestProxy> {
  // A TLS client port answers /metrics over TLS only: the tests read it from a plain metrics listener then.
  const metricsArgs = extraArgs.includes('--cert-file') && !extraArgs.includes('--metrics-addr') ? ['--metrics-addr', `127.0.0.1:${await freePort()}`] : [];
  const running = await startProxyProcess(endpoints, ['--shutdown-grace', '2s', '--workers', TEST_WORKERS ?? '2', ...metricsArgs, ...extraArgs], { dataDir });
  const metricsUrl = `http://${metricsAddrIn([...metricsArgs, ...extraArgs]) ?? running.address}`;
  const [host, port] = [running.address.split(':')[0] ?? '127.0.0.1', Number(running.address.split(':')[1])];
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await running.stop();
      const code = await running.exited;
      // The test run's safety net may SIGKILL what is left before a file's own cleanups run: nothing to drain then.
      if (code !== 0 && !killedBySafetyNet(running.child)) throw new Error(`the proxy with --workers ${TEST_WORKERS ?? ''} exited with ${code}:\n${running.stderr()}`);
      if (removeDataDir) rmSync(dataDir, { recursive: true, force: true });
    })();
    return stopped;
  };
  return {
    proxy: {
      address: { host, port },
      metricsAddress: null,
      close: stop,
      reconfigure() {
        throw new Error('a proxy run with ECP_TEST_WORKERS is reloaded with SIGHUP, not reconfigure()');
      },
    },
    get metrics(): Metrics {
      throw new Error('a proxy run with ECP_TEST_WORKERS is another process: read its metrics over HTTP');
    },
    address: running.address,
    url: `http://${running.address}`,
    async mirrored(revision = 1) {
      await until(`the mirror to reach revision ${revision}`, async () => (await mirrorRevisionOver(metricsUrl)) >= revision, 20_000, 25);
    },
    stop,
  };
}

function metricsAddrIn(args: readonly string[]): string | undefined {
  const at = args.indexOf('--metrics-addr');
  return at < 0 ? undefined : args[at + 1]?.replace(/^http:\/\//, '');
}

async function mirrorRevisionOver(url: string): Promise<number> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
    const line = text.split('\n').find((l) => l.startsWith('etcd_cache_proxy_mirror_revision '));
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  } catch {
    return 0;
  }
}

/** The real CLI in its own process, as an operator runs it. */
export interface ProxyProcess {
  readonly child: ChildProcess;
  readonly address: string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
  stop(): Promise<void>;
}

async function answersHttp(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

/**
 * Extra Node flags for every proxy process the tests and benchmarks start, e.g.
 * `ECP_PROXY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile one
 * (Node refuses --cpu-prof in NODE_OPTIONS).
 */
const PROXY_NODE_ARGS = (process.env.ECP_PROXY_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');

/**
 * What a proxy process runs: the sources under tsx, or with ECP_PROXY_BUILT
 * set the compiled CLI, as `npm start` runs it: `1` this checkout's dist/,
 * a directory another checkout's (a benchmark's before and after).
 */
function proxyEntry(): string[] {
  const built = process.env.ECP_PROXY_BUILT ?? '';
  if (built === '' || built === '0') return ['--import', 'tsx', CLI];
  return [join(built === '1' ? REPO_ROOT : built, 'dist', 'src', 'cli.js')];
}

export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(process.execPath, [...PROXY_NODE_ARGS, ...proxyEntry(), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackProcess(child);
  return child;
}

/** Runs one CLI command to its end: exit code and everything it printed. */
export async function runCliToExit(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = runCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  return { code, stdout, stderr };
}

export async function startProxyProcess(
  endpoints: readonly string[],
  extraArgs: readonly string[] = [],
  options: TestProxyOptions & { readonly port?: number } = {},
): Promise<ProxyProcess> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'ecp-proxy-'));
  const endpointArgs = endpoints.length === 0 ? [] : ['--endpoints', endpoints.join(',')];
  const child = runCli(['start', ...endpointArgs, '--listen-addr', `127.0.0.1:${port}`, '--data-dir', dataDir, ...extraArgs]);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  try {
    await until(
      () => `the proxy on port ${port} to start:\n${err}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`proxy exited early (${child.exitCode}):\n${err}`);
        return answersHttp(`http://${metricsAddrIn(extraArgs) ?? `127.0.0.1:${port}`}/metrics`);
      },
      20_000,
    );
  } catch (error) {
    // Not started in time: what was started goes with the error (its serving processes follow their primary).
    await stopChild(child);
    if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    child,
    address: `127.0.0.1:${port}`,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop() {
      await stopChild(child);
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
