import { appendFileSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster';
import { freePort } from '../support/etcd';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { proxyUser, turnAuthOn } from './fleet-auth';
import { startFleetBucket, type FleetBucket } from './fleet-bucket';
import { mountTmpfs, unmountTmpfs } from '../support/tmpfs';

/** One proxy of the fleet: its own port and data dir, which a restart keeps. */
export interface FleetProxy {
  readonly name: string;
  readonly address: string;
  readonly dataDir: string;
  /** What it mirrors: '' for the whole keyspace. */
  readonly prefixes: readonly string[];
  /** Whether its data dir is a tmpfs of its own (which a fault may fill). */
  readonly tmpfs: boolean;
  running(): boolean;
  /** SIGKILL by pid (a crash mid-traffic); resolves once it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir (etcd up or down). */
  restart(): Promise<void>;
  pid(): number | undefined;
  stop(): Promise<void>;
  stderr(): string;
}

export interface Fleet {
  readonly cluster: EtcdCluster;
  readonly proxies: readonly FleetProxy[];
  /** Why the proxies' data dirs are not on a tmpfs though one was asked for, or null. */
  readonly tmpfsRefused: string | null;
  /** The bucket every proxy falls back to, and one publishes to (only when asked for). */
  readonly bucket: FleetBucket | null;
  stop(): Promise<void>;
}

export interface FleetOptions {
  /** The members' peer traffic through forwarders (so that one can be cut off from its peers). */
  readonly peerNetwork?: boolean;
  /** Each proxy's data dir on a tmpfs of this many bytes (so that it can be filled up). */
  readonly tmpfsBytes?: number;
  /** etcd's auth on; each proxy mirrors as a user of its own (fleet-auth.ts). */
  readonly auth?: boolean;
  /** A bucket for snapshots (fleet-bucket.ts): p1 publishes to it, every proxy falls back to it. */
  readonly bucket?: boolean;
  /** Each proxy logs at info, and each of its processes' output is appended to `<logDir>/<name>.log` when it exits. */
  readonly logDir?: string;
}

interface ProxyPlan {
  readonly name: string;
  readonly args: readonly string[];
  readonly prefixes: readonly string[];
}

/** The prefixes the two-prefix proxy mirrors (the traffic writes under both, and elsewhere). */
export const MIRRORED_PREFIXES = ['/apisix/', '/service/'] as const;

/**
 * A 3-member etcd and three proxies in front of it, as a fleet runs them:
 * one plain, one with --workers 2, one mirroring two prefixes. Every proxy
 * lists every member. With `auth`, etcd's auth is on and each proxy mirrors
 * as a user of its own (fleet-auth.ts).
 */
export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const cluster = await startEtcdCluster(3, { peerNetwork: options.peerNetwork === true });
  const endpoints = cluster.members.map((member) => member.clientUrl);
  if (options.auth === true) await turnAuthOn(cluster.members[0]?.clientAddress ?? '', MIRRORED_PREFIXES);
  const common = ['--upstream-timeout', '2s', '--shutdown-grace', '1s', '--log-level', options.logDir === undefined ? 'warn' : 'info'];
  const user = (mirrorsEverything: boolean): string[] => (options.auth === true ? ['--user', proxyUser(mirrorsEverything)] : []);
  // p1 publishes: p2 mirrors the same keys, so it can take p1's snapshot (p3's scope is another, and refuses it).
  const bucket = options.bucket === true ? await startFleetBucket('p1') : null;
  const snapshots = (name: string): string[] => bucket?.args(name === bucket.publisher) ?? [];
  const plans: ProxyPlan[] = [
    { name: 'p1', args: [...common, ...user(true), ...snapshots('p1')], prefixes: [] },
    { name: 'p2', args: [...common, '--workers', '2', ...user(true), ...snapshots('p2')], prefixes: [] },
    { name: 'p3', args: [...common, ...MIRRORED_PREFIXES.flatMap((prefix) => ['--mirror-prefix', prefix]), ...user(false), ...snapshots('p3')], prefixes: MIRRORED_PREFIXES },
  ];
  const proxies: FleetProxy[] = [];
  const refusals: string[] = [];
  try {
    for (const plan of plans) proxies.push(await startFleetProxy(plan, endpoints, options.tmpfsBytes, (reason) => refusals.push(reason), options.logDir));
  } catch (error) {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await bucket?.close();
    await cluster.stop();
    throw error;
  }
  return {
    cluster,
    proxies,
    tmpfsRefused: refusals[0] ?? null,
    bucket,
    async stop() {
      await Promise.all(proxies.map((proxy) => proxy.stop()));
      await bucket?.close();
      await cluster.stop();
    },
  };
}

async function startFleetProxy(plan: ProxyPlan, endpoints: readonly string[], tmpfsBytes: number | undefined, refused: (reason: string) => void, logDir: string | undefined): Promise<FleetProxy> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), `ecp-robust-${plan.name}-`));
  const mounted = tmpfsBytes === undefined ? null : mountTmpfs(dataDir, tmpfsBytes);
  if (mounted !== null && !mounted.ok) refused(mounted.reason);
  const tmpfs = mounted?.ok === true;
  const removeDataDir = (): void => {
    if (tmpfs) {
      unmountTmpfs(dataDir);
      rmdirSync(dataDir);
    } else rmSync(dataDir, { recursive: true, force: true });
  };
  let process: ProxyProcess | null;
  try {
    process = await startProxyProcess(endpoints, plan.args, { dataDir, port });
  } catch (error) {
    removeDataDir();
    throw error;
  }
  let exited = false;
  const watchExit = (running: ProxyProcess): void => {
    void running.exited.then((code) => {
      if (process === running) exited = true;
      if (logDir !== undefined) appendFileSync(join(logDir, `${plan.name}.log`), `${running.stdout()}${running.stderr()}--- exited: ${code}\n`);
    });
  };
  watchExit(process);
  return {
    name: plan.name,
    address: `127.0.0.1:${port}`,
    dataDir,
    prefixes: plan.prefixes,
    tmpfs,
    running: () => process !== null && !exited,
    pid: () => process?.child.pid,
    async kill() {
      const running = process;
      if (running === null) return;
      // With --workers the serving processes go with their primary (they exit when its channel closes).
      running.child.kill('SIGKILL');
      await running.exited;
    },
    async restart() {
      exited = false;
      process = await startProxyProcess(endpoints, plan.args, { dataDir, port });
      watchExit(process);
    },
    async stop() {
      await process?.stop();
      process = null;
      removeDataDir();
    },
    stderr: () => process?.stderr() ?? '',
  };
}
