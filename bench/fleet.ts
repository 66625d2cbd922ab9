// Benchmark: what a fleet of proxies costs etcd, next to etcd's own
// grpc-proxy measured the same way. N machines, each a proxy process with its
// own data dir and one gateway holding a watch on /apisix/ through it (as
// APISIX does), in front of a 3-member etcd on loopback. Read from etcd's own
// /metrics, summed over its members:
//
// * idle: RPCs and bytes per second per machine over a measured window, by
//   method (grpc_server_started_total, etcd_network_client_grpc_*_bytes_total);
// * writes: for each of --writes writes, the time until every gateway has it
//   (p50, p99, max over the writes);
// * an outage: every member killed and restarted; the time until every
//   gateway has a write made after the restart, the RPCs and bytes that took,
//   and how many proxies listed the keyspace again.
//
// Each target gets a fresh cluster holding the same keys. Extrapolated
// linearly to 10 000 machines in the report.
//
// --tiers M adds a tiered fleet to the run: the same N machines, their proxies
// (edges) given M regional proxies (bench/support/tiers.ts) instead of etcd.
// Measured the same way, plus what the regionals carry, and then, with etcd
// up (bench/support/tier-outages.ts): one regional SIGKILLed (the time until
// every gateway, then every edge's mirror, has a write made after, the RPCs
// etcd took meanwhile); every
// other one SIGKILLed too (the time until every edge refuses writes at once,
// whether the edges' mirrors answer reads, stale-marked, and the gateways'
// watches stay open); every regional restarted on its port and data dir (the
// time until every gateway has a write made after, the RPCs etcd took, who
// listed the keyspace again). Extrapolated to 10 000 and 100 000 machines as what
// each regional costs etcd plus what each edge costs etcd through it.
//
//   node --import tsx bench/fleet.ts [--proxies 50] [--window-s 60] [--keys 1000] [--writes 20] [--targets etcd-cache-proxy,grpc-proxy] [--tiers 2]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { freePort, stopChild } from '../test/support/etcd';
import { startEtcdCluster, type EtcdCluster } from '../test/support/etcd-cluster';
import { trackProcess } from '../test/support/processes';
import { startProxyProcess } from '../test/support/proxy';
import { call, rawClients } from '../test/support/raw-client';
import { countersOf, difference, total, type EtcdCounters } from './support/etcd-counters';
import { GatewayWatch } from './support/gateway-watch';
import { metricOf, sumCalls, upstreamCallsOf } from './support/proxy-metrics';
import { killAllRegionals, killOneRegional, restartAllRegionals, type AllRegionalsBack, type AllRegionalsDown, type OneRegionalDown } from './support/tier-outages';
import { startRegionals, type Regionals } from './support/tiers';

const { values } = parseArgs({
  options: {
    proxies: { type: 'string', default: '50' },
    'window-s': { type: 'string', default: '60' },
    keys: { type: 'string', default: '1000' },
    writes: { type: 'string', default: '20' },
    targets: { type: 'string', default: 'etcd-cache-proxy,grpc-proxy' },
    tiers: { type: 'string', default: '0' },
  },
});
const PROXIES = Number(values.proxies);
const WINDOW_S = Number(values['window-s']);
const KEYS = Number(values.keys);
const WRITES = Number(values.writes);
const TIERS = Number(values.tiers);
const FLEET = 10_000;
const PREFIX = '/apisix/';
const WRITE_KEY = '/apisix/routes/fleet-write';

type Target = 'etcd-cache-proxy' | 'grpc-proxy' | 'tiers';

function perSecondRows(counters: EtcdCounters, seconds: number, proxies: number): string[] {
  return [...counters.rpcs]
    .sort((a, b) => b[1] - a[1])
    .map(([method, count]) => `  ${method.padEnd(28)} ${(count / seconds / proxies).toFixed(3).padStart(8)} /s per proxy   ${((count / seconds / proxies) * FLEET).toFixed(0).padStart(8)} /s for ${FLEET}`);
}

const percentile = (values: readonly number[], p: number): number => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)] ?? NaN;

/** One gateway machine: the proxy process and the gateway watching through it. */
interface Machine {
  readonly gateway: GatewayWatch;
  /** "127.0.0.1:PORT" of its proxy. */
  readonly address: string;
  /** Times this proxy listed the keyspace again (null: the target does not say). */
  relists(): Promise<number | null>;
  /** The calls this proxy started upstream so far, by "method reason" (null: the target does not say). */
  upstreamCalls(): Promise<Map<string, number> | null>;
  stop(): Promise<void>;
}

/** Every machine's upstream calls summed by "method reason", or null when the target does not count them. */
async function fleetUpstreamCalls(machines: readonly Machine[]): Promise<Map<string, number> | null> {
  const sum = new Map<string, number>();
  for (const machine of machines) {
    const calls = await machine.upstreamCalls();
    if (calls === null) return null;
    for (const [series, count] of calls) sum.set(series, (sum.get(series) ?? 0) + count);
  }
  return sum;
}

/** Until a serializable Range through `address` answers: the process is listening and reaches etcd. */
async function untilAnswers(address: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const clients = rawClients(address);
    const outcome = await call(clients.kv, 'Range', { key: Buffer.from(PREFIX), serializable: true }, { deadlineMs: 1_000 });
    clients.close();
    if (outcome.error === null) return;
    if (Date.now() > deadline) throw new Error(`${address} did not answer: ${outcome.error.details}`);
    await sleep(200);
  }
}

async function startMachine(target: Target, cluster: EtcdCluster, index: number, regionals: Regionals | null): Promise<Machine> {
  if (target === 'etcd-cache-proxy' || target === 'tiers') {
    const proxy =
      regionals === null
        ? await startProxyProcess([], ['--initial-cluster', cluster.initialCluster(), '--log-level', 'warn'])
        : await startProxyProcess(regionals.endpointsFor(index), ['--log-level', 'warn']);
    const gateway = new GatewayWatch(proxy.address, Buffer.from(PREFIX), WRITE_KEY);
    return {
      gateway,
      address: proxy.address,
      relists: () => metricOf(proxy.address, 'etcd_cache_proxy_mirror_relists_total'),
      upstreamCalls: () => upstreamCallsOf(proxy.address),
      async stop() {
        gateway.close();
        await proxy.stop();
      },
    };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ecp-fleet-gp-'));
  const endpoints = cluster.members.map((m) => m.clientUrl).join(',');
  const child = spawn('etcd', ['grpc-proxy', 'start', `--endpoints=${endpoints}`, `--listen-addr=127.0.0.1:${port}`, `--data-dir=${dir}`], { stdio: 'ignore' });
  trackProcess(child);
  const address = `127.0.0.1:${port}`;
  await untilAnswers(address, 30_000);
  const gateway = new GatewayWatch(address, Buffer.from(PREFIX), WRITE_KEY);
  return {
    gateway,
    address,
    relists: () => Promise.resolve(null),
    upstreamCalls: () => Promise.resolve(null),
    async stop() {
      gateway.close();
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Milliseconds from `sent` until each gateway had the value (Infinity where it never came). */
async function arrivals(machines: readonly Machine[], value: string, sent: number, timeoutMs: number): Promise<number[]> {
  return Promise.all(machines.map(async (m) => (await m.gateway.whenSeen(value, timeoutMs)) - sent));
}

/** A write to etcd, retried until a member takes it (right after a restart, none may yet). */
async function writeToEtcd(cluster: EtcdCluster, value: string): Promise<number> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const member of cluster.members) {
      const clients = rawClients(member.clientAddress);
      const sent = performance.now();
      const outcome = await call(clients.kv, 'Put', { key: Buffer.from(WRITE_KEY), value: Buffer.from(value) }, { deadlineMs: 3_000 });
      clients.close();
      if (outcome.error === null) return sent;
    }
    if (Date.now() > deadline) throw new Error('no member took the write');
    await sleep(200);
  }
}

interface Report {
  readonly target: Target;
  readonly idle: EtcdCounters;
  /** What the proxies say they started upstream in the idle window, by "method reason" (null: not counted). */
  readonly idleByReason: Map<string, number> | null;
  readonly rpcPerMachine: number;
  readonly bytesPerMachine: number;
  /** Per write, ms until the last gateway had it. */
  readonly writeTimes: number[];
  /** ms after the restart until the last gateway had the new write, and the median gateway. */
  readonly recoveryAll: number;
  readonly recoveryMedian: number;
  readonly recovered: EtcdCounters;
  readonly relists: number | null;
  readonly tier: TierReport | null;
}

/** What the regionals carried, for a tiered fleet. */
interface TierReport {
  /** Per regional, its edges' mirror watches. */
  readonly watchStreams: number[];
  /** What the regionals say they started upstream in the idle window, by "method reason". */
  readonly byReason: Map<string, number>;
  /** Calls the regionals answered in the idle window, and passed on to etcd. */
  readonly answered: number;
  readonly forwarded: number;
  /** One regional SIGKILLed: per gateway (and per edge's mirror), ms until it had a write made after; etcd's counts meanwhile. */
  readonly failover: OneRegionalDown;
  /** Then every other one too: each edge's time until it refused writes at once, its reads, the gateways' watches. */
  readonly allDown: AllRegionalsDown;
  /** Then every regional restarted on its port and data dir: until every gateway had a write made after; relists. */
  readonly allBack: AllRegionalsBack;
}

async function runFleet(target: Target): Promise<Report> {
  const cluster = await startEtcdCluster(3);
  const first = cluster.members[0];
  if (first === undefined) throw new Error('no member');
  const seed = rawClients(first.clientAddress);
  const value = Buffer.alloc(900, 'x');
  for (let i = 0; i < KEYS; i += 1) await call(seed.kv, 'Put', { key: Buffer.from(`/apisix/routes/${String(i).padStart(6, '0')}`), value });
  seed.close();
  const machines: Machine[] = [];
  let regionals: Regionals | null = null;
  try {
    if (target === 'tiers') regionals = await startRegionals(TIERS, cluster.initialCluster());
    for (let i = 0; i < PROXIES; i += 1) machines.push(await startMachine(target, cluster, i, regionals));
    const created = await Promise.all(machines.map((m) => m.gateway.created(60_000)));
    if (created.some((ok) => !ok)) throw new Error(`${target}: not every gateway's watch was created`);
    const ready = await arrivals(machines, 'ready', await writeToEtcd(cluster, 'ready'), 60_000);
    if (ready.some((ms) => !Number.isFinite(ms))) throw new Error(`${target}: not every gateway saw the first write`);
    await sleep(5_000); // past start-up: members discovered, first checks done

    const idleBefore = await countersOf(cluster);
    const callsBefore = await fleetUpstreamCalls(machines);
    const regionalBefore = await regionals?.calls();
    const regionalReasonsBefore = regionals === null ? null : await sumCalls(regionals.live());
    await sleep(WINDOW_S * 1000);
    const idle = difference(await countersOf(cluster), idleBefore);
    const callsAfter = await fleetUpstreamCalls(machines);
    const regionalAfter = await regionals?.calls();
    const regionalReasonsAfter = regionals === null ? null : await sumCalls(regionals.live());
    const watchStreams = (await regionals?.watchStreams()) ?? [];
    const idleByReason =
      callsBefore === null || callsAfter === null
        ? null
        : new Map([...callsAfter].map(([series, n]) => [series, n - (callsBefore.get(series) ?? 0)] as const).filter(([, n]) => n > 0));

    const writeTimes: number[] = [];
    for (let i = 0; i < WRITES; i += 1) {
      const times = await arrivals(machines, `w${i}`, await writeToEtcd(cluster, `w${i}`), 30_000);
      writeTimes.push(Math.max(...times));
      await sleep(100);
    }

    const relistsBefore = await Promise.all(machines.map((m) => m.relists()));
    for (const member of cluster.members) member.signal('SIGKILL');
    await sleep(5_000); // every proxy notices the outage
    await Promise.all(cluster.members.map((member) => member.restart()));
    const restarted = performance.now();
    await writeToEtcd(cluster, 'after-outage');
    const recovery = await arrivals(machines, 'after-outage', restarted, 120_000);
    // A restarted member counts from zero: everything since it started is the recovery's.
    const recovered = await countersOf(cluster);
    const relistsAfter = await Promise.all(machines.map((m) => m.relists()));
    const relists = relistsAfter.every((n) => n === null)
      ? null
      : relistsAfter.reduce<number>((sum, n, i) => sum + ((n ?? 0) - (relistsBefore[i] ?? 0) > 0 ? 1 : 0), 0);

    let tier: TierReport | null = null;
    if (regionals !== null && regionalBefore !== undefined && regionalAfter !== undefined) {
      await sleep(5_000); // the edges past the outage: a leader seen, probes back to their idle pace
      const steps = { cluster, regionals, edges: machines, watchedKey: WRITE_KEY, writeToEtcd: (value: string) => writeToEtcd(cluster, value) };
      const failover = await killOneRegional(steps);
      const allDown = await killAllRegionals(steps, 'after-regional');
      const allBack = await restartAllRegionals(steps);
      tier = {
        watchStreams,
        byReason: new Map(
          [...(regionalReasonsAfter ?? [])].map(([series, n]) => [series, n - (regionalReasonsBefore?.get(series) ?? 0)] as const).filter(([, n]) => n > 0),
        ),
        answered: regionalAfter.answered - regionalBefore.answered,
        forwarded: regionalAfter.forwarded - regionalBefore.forwarded,
        failover,
        allDown,
        allBack,
      };
    }
    return {
      target,
      idle,
      idleByReason,
      rpcPerMachine: total(idle) / WINDOW_S / PROXIES,
      bytesPerMachine: (idle.sentBytes + idle.receivedBytes) / WINDOW_S / PROXIES,
      writeTimes,
      recoveryAll: Math.max(...recovery),
      recoveryMedian: percentile(recovery, 50),
      recovered,
      relists,
      tier,
    };
  } finally {
    await Promise.all(machines.map((m) => m.stop()));
    await regionals?.stop();
    await cluster.stop();
  }
}

const ms = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(0)} ms` : 'never');

function print(report: Report): void {
  const { rpcPerMachine, bytesPerMachine, writeTimes, recovered } = report;
  console.log(`\n## ${report.target === 'tiers' ? `tiers: ${PROXIES} edges behind ${TIERS} regionals` : report.target}`);
  console.log(
    `idle, ${WINDOW_S} s: ${rpcPerMachine.toFixed(3)} RPC/s and ${(bytesPerMachine / 1024).toFixed(2)} KiB/s per machine; for ${FLEET} machines ${(rpcPerMachine * FLEET).toFixed(0)} RPC/s and ${((bytesPerMachine * FLEET) / 1024 / 1024).toFixed(1)} MiB/s`,
  );
  for (const row of perSecondRows(report.idle, WINDOW_S, PROXIES)) console.log(row);
  if (report.idleByReason !== null) {
    console.log('  as the proxies count them (upstream_calls_total), by method and reason:');
    for (const [series, count] of [...report.idleByReason].sort((a, b) => b[1] - a[1])) {
      console.log(`    ${series.padEnd(44)} ${(count / WINDOW_S / PROXIES).toFixed(3).padStart(8)} /s per proxy`);
    }
  }
  console.log(
    `a write until all ${PROXIES} gateways have it (${writeTimes.length} writes): p50 ${ms(percentile(writeTimes, 50))}, p99 ${ms(percentile(writeTimes, 99))}, max ${ms(Math.max(...writeTimes))}`,
  );
  console.log(
    `after every member was killed and restarted: all ${PROXIES} gateways have a new write ${ms(report.recoveryAll)} after the restart (median gateway ${ms(report.recoveryMedian)}); ${total(recovered)} RPCs and ${((recovered.sentBytes + recovered.receivedBytes) / 1024).toFixed(0)} KiB meanwhile (${(total(recovered) / PROXIES).toFixed(1)} RPCs per machine; ${((total(recovered) / PROXIES) * FLEET).toFixed(0)} for ${FLEET})${report.relists === null ? '' : `; ${report.relists} proxies listed again`}`,
  );
  if (report.tier !== null) printTier(report, report.tier);
}

/**
 * What the regionals carried, and the tier extrapolated: etcd's idle RPCs
 * split into what the regionals passed on for their edges (per edge) and the
 * rest (the regionals' own: mirror watch, probes, checks; per regional).
 */
function printTier(report: Report, tier: TierReport): void {
  const etcdPerSecond = total(report.idle) / WINDOW_S;
  const perEdge = tier.forwarded / WINDOW_S / PROXIES;
  const perRegional = Math.max(0, etcdPerSecond - tier.forwarded / WINDOW_S) / TIERS;
  const downstreamPerEdge = tier.answered / WINDOW_S / PROXIES;
  console.log(
    `regionals, idle: ${tier.watchStreams.join(' + ')} edge mirror watches; they answered ${(tier.answered / WINDOW_S).toFixed(2)} RPC/s (${downstreamPerEdge.toFixed(3)} per edge), passed ${(tier.forwarded / WINDOW_S).toFixed(2)} on to etcd (${perEdge.toFixed(3)} per edge); the rest of etcd's, ${perRegional.toFixed(3)} RPC/s per regional`,
  );
  console.log('  as the regionals count them (upstream_calls_total), by method and reason:');
  for (const [series, count] of [...tier.byReason].sort((a, b) => b[1] - a[1])) {
    console.log(`    ${series.padEnd(44)} ${(count / WINDOW_S / TIERS).toFixed(3).padStart(8)} /s per regional`);
  }
  const { failover, allDown, allBack } = tier;
  console.log(
    `one regional SIGKILLed: all ${PROXIES} gateways have a new write ${ms(Math.max(...failover.arrivals))} after (median gateway ${ms(percentile(failover.arrivals, 50))}); ${total(failover.etcd)} RPCs to etcd meanwhile; every edge's own mirror has it ${ms(Math.max(...failover.mirrors))} after (median edge ${ms(percentile(failover.mirrors, 50))})`,
  );
  const earlier = [...allDown.earlierAnswers].sort((a, b) => b[1] - a[1]).map(([answer, n]) => `${n}x ${answer}`);
  console.log(
    `every regional SIGKILLed: every edge refuses a write at once (UNAVAILABLE, upstream unreachable) ${ms(Math.max(...allDown.refusedFastAfter))} after the kill (median edge ${ms(percentile(allDown.refusedFastAfter, 50))})${earlier.length === 0 ? '' : `; writes before that: ${earlier.join(', ')}`}; ${allDown.readsAnswered} of ${PROXIES} edges answered a serializable Range from their mirror (${allDown.readsStale} marked stale, ${allDown.readsCurrent} with the last write, slowest ${ms(allDown.slowestReadMs)})${allDown.readsOtherwise.size === 0 ? '' : `, the others: ${[...allDown.readsOtherwise].map(([answer, n]) => `${n}x ${answer}`).join(', ')}`}; ${PROXIES - allDown.watchesEnded} of ${PROXIES} gateways' watches stayed open`,
  );
  console.log(
    `every regional restarted (same port and data dir): all ${PROXIES} gateways have a new write ${ms(Math.max(...allBack.arrivals))} after the restart (median gateway ${ms(percentile(allBack.arrivals, 50))}); ${total(allBack.etcd)} RPCs and ${((allBack.etcd.sentBytes + allBack.etcd.receivedBytes) / 1024).toFixed(0)} KiB to etcd meanwhile; ${allBack.regionalsRelisted} of ${TIERS} regionals and ${allBack.edgesRelisted} of ${PROXIES} edges listed again; ${allBack.watchesEnded} gateways' watches ended`,
  );
  for (const machines of [10_000, 100_000]) {
    for (const regionalCount of [10, 100]) {
      console.log(
        `  ${machines} machines behind ${regionalCount} regionals: etcd ${(regionalCount * perRegional + machines * perEdge).toFixed(0)} RPC/s idle; each regional ${machines / regionalCount} edge watch streams and ${((machines / regionalCount) * downstreamPerEdge).toFixed(0)} RPC/s from its edges`,
      );
    }
  }
}

async function main(): Promise<void> {
  const targets = (values.targets ?? '').split(',').filter((t): t is Target => t === 'etcd-cache-proxy' || t === 'grpc-proxy');
  if (TIERS > 0) targets.push('tiers');
  console.log(`${PROXIES} machines (a proxy and a gateway watching /apisix/ through it), 3-member etcd 3.4 on loopback, ${KEYS} keys of 900 B`);
  for (const target of targets) print(await runFleet(target));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
