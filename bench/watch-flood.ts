// Benchmark: a watch flood, and whether anyone else starves meanwhile.
// --connections (20) connections each open --streams (500) Watch streams at
// once, one watch each (10 000 watches), as a fleet of clients restarting
// together does. Meanwhile a probe makes a plain JSON-gateway Range (POST
// /v3/kv/range, as a gateway makes it) on a NEW connection every
// --probe-every-ms (100), and another probe the same over gRPC (a new
// channel each time): latency p50/p99/max, how many answered later than
// 100 ms, and how many failed (reset, timed out after --probe-timeout-ms).
// Also the serving process's RSS before, at its peak during the flood, and
// 25 s and --after-s (60) s after the streams are closed.
// Side by side in one run: etcd direct, `etcd grpc-proxy` (no JSON gateway:
// gRPC probe only) and etcd-cache-proxy (its CLI in its own process).
//
//   node --import tsx bench/watch-flood.ts [--connections 20] [--streams 500] [--keys 100] [--hold-s 5] [--after-s 60] [--targets direct,grpc-proxy,proxy] [--compare DIR] [--timeline]
//
// --compare DIR floods a proxy run from another checkout too (before and
// after a change, in one run); --timeline lists every slow probe by when it
// started, next to when the flood began, was all created and was closed.
// The flood's clients and the probes live in this process and share the two
// cores with the servers: compare ratios within a run, and note the load.
// The RSS samples after a flood are taken on timers while the next target is
// flooded (it only costs that target's process and this one CPU).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { credentials, loadPackageDefinition, type ChannelCredentials, type ChannelOptions, type Client } from '@grpc/grpc-js';
import { loadEtcdProto } from '../test/support/etcd-proto';
import { freePort, startEtcd, stopChild, type EtcdServer } from '../test/support/etcd';
import { trackProcess } from '../test/support/processes';
import { REPO_ROOT, startProxyProcess } from '../test/support/proxy';
import { call, rawClients } from '../test/support/raw-client';
import { sleep } from '../test/support/until';
import { probeEvery, probeJsonRange, type ProbeResult, type Prober } from '../test/support/watch-flood';
import { untilMirrored } from './support/calls';
import { processTree } from './support/cpu';
import { startGrpcProxy } from './support/grpc-proxy';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '20' },
    streams: { type: 'string', default: '500' },
    keys: { type: 'string', default: '100' },
    'probe-every-ms': { type: 'string', default: '100' },
    'probe-timeout-ms': { type: 'string', default: '5000' },
    'hold-s': { type: 'string', default: '5' },
    'after-s': { type: 'string', default: '60' },
    'create-timeout-s': { type: 'string', default: '120' },
    targets: { type: 'string', default: 'direct,grpc-proxy,proxy' },
    timeline: { type: 'boolean', default: false },
    compare: { type: 'string' },
  },
});
const CONNECTIONS = Number(values.connections);
const STREAMS = Number(values.streams);
const KEYS = Number(values.keys);
const PROBE_EVERY_MS = Number(values['probe-every-ms']);
const PROBE_TIMEOUT_MS = Number(values['probe-timeout-ms']);
/** How long the flood's streams stay open once all are created, probes still going. */
const HOLD_MS = Number(values['hold-s']) * 1000;
const AFTER_MS = Number(values['after-s']) * 1000;
const CREATE_TIMEOUT_MS = Number(values['create-timeout-s']) * 1000;
const TARGETS = new Set(values.targets.split(','));
/** --timeline: every probe later than DELAYED_MS (or failed), by when it started, next to when the flood began, was created and was closed. */
const TIMELINE = values.timeline === true;
/** --compare DIR: also flood a proxy run from another checkout (its src/cli.ts under tsx): before and after a change, in one run. */
const COMPARE = values.compare ?? null;
const PREFIX = '/flood/';
const PREFIX_END = '/flood0';
/** Later than this, a probe counts as delayed (what the proxy must not do to a plain read). */
const DELAYED_MS = 100;
/** RSS samples after the streams are closed, besides the last one at --after-s. */
const AFTER_SAMPLES_MS = [25_000];
const MiB = 1024 * 1024;

interface Target {
  readonly name: string;
  readonly address: string;
  /** Whether the port serves etcd's JSON gateway. */
  readonly json: boolean;
  /** The process (and its children) whose memory the flood costs. */
  readonly pid: number;
}

interface Row {
  readonly target: Target;
  readonly load: string;
  readonly createSeconds: number;
  readonly created: number;
  readonly createFailed: number;
  readonly json: ProbeResult[];
  readonly grpc: ProbeResult[];
  readonly rssBefore: number;
  readonly rssPeak: number;
  /** RSS at each of AFTER_SAMPLES_MS and AFTER_MS after the close, filled in on timers. */
  readonly rssAfter: Map<number, number>;
  /** The proxy's longest event-loop stall from just before the flood to after its close, ms (its own gauge; null: not a Node proxy). */
  readonly loopStallMs: number | null;
  /** performance.now() when the flood started, when every stream was created, and when the close began. */
  readonly marks: { readonly started: number; readonly created: number; readonly closing: number };
}

function rssBytes(pid: number): number {
  return processTree(pid).reduce((sum, one) => {
    try {
      const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${one}/status`, 'utf8'))?.[1];
      return sum + Number(kib ?? 0) * 1024;
    } catch {
      return sum; // exited meanwhile
    }
  }, 0);
}

/**
 * The proxy's nodejs_eventloop_lag_max_seconds (prom-client's, over the
 * time since the last scrape: nothing else scrapes it here), in ms; null for
 * a process without it.
 */
async function loopLagMaxMs(target: Target): Promise<number | null> {
  if (!target.json) return null;
  try {
    const text = await (await fetch(`http://${target.address}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    const line = text.split('\n').find((l) => l.startsWith('nodejs_eventloop_lag_max_seconds '));
    return line === undefined ? null : Number(line.split(' ')[1]) * 1000;
  } catch {
    return null;
  }
}

function load(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

type RangeClient = Client & { Range(request: object, options: object, callback: (error: Error | null) => void): void };
type KvCtor = new (address: string, creds: ChannelCredentials, options: ChannelOptions) => RangeClient;
let kvCtor: KvCtor | undefined;

/** One gRPC Range on a new channel (its own connection), closed after: the gRPC side of the probe. */
function probeGrpcRange(address: string, key: Buffer, timeoutMs: number): Promise<ProbeResult> {
  kvCtor ??= (loadPackageDefinition(loadEtcdProto()) as unknown as { etcdserverpb: { KV: KvCtor } }).etcdserverpb.KV;
  const client = new kvCtor(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const started = performance.now();
  return new Promise((resolve) => {
    client.Range({ key, serializable: true }, { deadline: Date.now() + timeoutMs }, (error) => {
      client.close();
      const ms = performance.now() - started;
      if (error === null) resolve({ outcome: 'ok', startedAt: started, ms });
      else {
        const { code, details } = error as Error & { code?: number; details?: string };
        const reset = /ECONNRESET|Connection reset/i.test(details ?? '');
        resolve({ outcome: code === 4 ? 'timeout' : reset ? 'reset' : 'error', startedAt: started, ms, detail: `${code ?? '?'} ${details ?? ''}` });
      }
    });
  });
}

interface FloodChild {
  allCreated(timeoutMs: number): Promise<void>;
  /** Closes every stream; resolves with what the flood last counted, once its process is gone. */
  close(): Promise<{ created: number; failed: number }>;
}

/** The flood in its own process (support/flood-process.ts): this one's event loop stays free for the probes. */
function startFlood(address: string): FloodChild {
  const child = fork(join(REPO_ROOT, 'bench', 'support', 'flood-process.ts'), [address, String(CONNECTIONS), String(STREAMS), PREFIX, PREFIX_END], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  trackProcess(child);
  let last = { created: 0, failed: 0 };
  child.on('message', (message) => (last = message as typeof last));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const total = CONNECTIONS * STREAMS;
  return {
    async allCreated(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (last.created < total) {
        if (Date.now() > deadline) throw new Error(`after ${timeoutMs} ms only ${last.created} of ${total} watch streams were created (${last.failed} failed)`);
        if (child.exitCode !== null) throw new Error(`the flood process exited (${child.exitCode})`);
        await sleep(50);
      }
    },
    async close() {
      child.send('close');
      await exited;
      return last;
    },
  };
}

async function flood(target: Target, pending: Promise<void>[]): Promise<Row> {
  const [host, port] = [target.address.split(':')[0] ?? '127.0.0.1', Number(target.address.split(':')[1])];
  const probeKey = Buffer.from(`${PREFIX}00000000`);
  const rssBefore = rssBytes(target.pid);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(target.pid))), 200);
  const probers: { json: Prober | null; grpc: Prober } = {
    json: target.json ? probeEvery(PROBE_EVERY_MS, () => probeJsonRange(host, port, probeKey, PROBE_TIMEOUT_MS)) : null,
    grpc: probeEvery(PROBE_EVERY_MS, () => probeGrpcRange(target.address, probeKey, PROBE_TIMEOUT_MS)),
  };
  const loadAtStart = load();
  await loopLagMaxMs(target); // a scrape starts the gauge's window afresh
  await sleep(500); // a few probes before the flood
  const started = performance.now();
  const streams = startFlood(target.address);
  let createSeconds = NaN;
  try {
    await streams.allCreated(CREATE_TIMEOUT_MS);
    createSeconds = (performance.now() - started) / 1000;
  } catch (error) {
    console.error(`${target.name}: ${(error as Error).message}`);
  }
  const createdAt = performance.now();
  await sleep(HOLD_MS);
  const closing = performance.now();
  const { created, failed: createFailed } = await streams.close();
  const closedAt = Date.now();
  await sleep(1_000); // the close itself is part of the flood
  await Promise.all([probers.json?.stop(), probers.grpc.stop()]);
  const loopStallMs = await loopLagMaxMs(target);
  clearInterval(sampler);
  rssPeak = Math.max(rssPeak, rssBytes(target.pid));
  const rssAfter = new Map<number, number>();
  for (const after of [...AFTER_SAMPLES_MS, AFTER_MS]) {
    pending.push(sleep(closedAt + after - Date.now()).then(() => void rssAfter.set(after, rssBytes(target.pid))));
  }
  return {
    target,
    load: `${loadAtStart} -> ${load()}`,
    createSeconds,
    created,
    createFailed,
    json: probers.json?.results ?? [],
    grpc: probers.grpc.results,
    rssBefore,
    rssPeak,
    rssAfter,
    loopStallMs,
    marks: { started, created: createdAt, closing },
  };
}

async function seed(etcd: EtcdServer): Promise<number> {
  const clients = rawClients(etcd.clientAddress);
  let revision = 0;
  try {
    for (let i = 0; i < KEYS; i += 1) {
      const outcome = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: Buffer.from(`${PREFIX}${String(i).padStart(8, '0')}`), value: Buffer.from(`value ${i}`) });
      if (outcome.error !== null) throw outcome.error;
      revision = Number(outcome.response?.header?.revision ?? 0);
    }
  } finally {
    clients.close();
  }
  return revision;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function probeLine(results: readonly ProbeResult[]): string {
  if (results.length === 0) return '(none)';
  const answered = results.filter((r) => r.outcome === 'ok').map((r) => r.ms).sort((a, b) => a - b);
  const count = (outcome: ProbeResult['outcome']): number => results.filter((r) => r.outcome === outcome).length;
  const failures = results.length - answered.length;
  const delayed = results.filter((r) => r.outcome !== 'ok' || r.ms > DELAYED_MS).length;
  const details = [...new Set(results.filter((r) => r.outcome !== 'ok').map((r) => `${r.outcome}${r.detail === undefined ? '' : ` ${r.detail}`}`))].slice(0, 3);
  return [
    `${results.length} probes`,
    `p50 ${quantile(answered, 0.5).toFixed(1)}`,
    `p99 ${quantile(answered, 0.99).toFixed(1)}`,
    `max ${(answered[answered.length - 1] ?? NaN).toFixed(1)} ms`,
    `>${DELAYED_MS} ms or failed: ${delayed}`,
    `failed ${failures} (reset ${count('reset')}, timeout ${count('timeout')}, other ${count('error') + count('http-error')})`,
    ...(details.length > 0 ? [`[${details.join('; ')}]`] : []),
  ].join(', ');
}

/** The slow or failed probes, in ms from the flood's start (negative: before it). */
function timeline(row: Row): void {
  const at = (t: number): string => (t - row.marks.started).toFixed(0);
  console.log(`  flood all created at +${at(row.marks.created)} ms, closing at +${at(row.marks.closing)} ms`);
  const slow = [...row.json.map((r) => ({ kind: 'json', ...r })), ...row.grpc.map((r) => ({ kind: 'grpc', ...r }))]
    .filter((r) => r.outcome !== 'ok' || r.ms > DELAYED_MS)
    .sort((a, b) => a.startedAt - b.startedAt);
  for (const r of slow) console.log(`    ${r.kind} started +${at(r.startedAt)} ms: ${r.outcome} after ${r.ms.toFixed(0)} ms${r.detail === undefined ? '' : ` (${r.detail})`}`);
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '?' : `${(bytes / MiB).toFixed(1)}`);

/** The proxy of another checkout (--compare), its CLI under tsx, as startProxyProcess runs this one's. */
async function startOtherProxy(dir: string, endpoint: string, revision: number): Promise<{ child: ChildProcess; address: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-flood-compare-'));
  const child = spawn(process.execPath, ['--import', 'tsx', join(dir, 'src', 'cli.ts'), 'start', '--endpoints', endpoint, '--listen-addr', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log-level', 'warn'], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  trackProcess(child);
  await untilMirrored(`http://127.0.0.1:${port}`, revision);
  return {
    child,
    address: `127.0.0.1:${port}`,
    async stop() {
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const revision = await seed(etcd);
  const grpcProxy = TARGETS.has('grpc-proxy') ? await startGrpcProxy(etcd.clientUrl) : null;
  const proxy = TARGETS.has('proxy') ? await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']) : null;
  if (proxy !== null) await untilMirrored(`http://${proxy.address}`, revision);
  const other = COMPARE === null ? null : await startOtherProxy(COMPARE, etcd.clientUrl, revision);
  const rows: Row[] = [];
  const pending: Promise<void>[] = [];
  try {
    const targets: Target[] = [];
    if (other !== null) targets.push({ name: `proxy of ${COMPARE ?? ''}`, address: other.address, json: true, pid: other.child.pid ?? -1 });
    if (proxy !== null) targets.push({ name: 'etcd-cache-proxy', address: proxy.address, json: true, pid: proxy.child.pid ?? -1 });
    if (TARGETS.has('direct')) targets.push({ name: 'etcd direct', address: etcd.clientAddress, json: true, pid: etcd.pid });
    if (grpcProxy !== null) targets.push({ name: 'etcd grpc-proxy', address: grpcProxy.address, json: false, pid: grpcProxy.pid });
    await sleep(2_000); // let the proxy settle before its idle RSS is read
    for (const target of targets) {
      rows.push(await flood(target, pending));
      await sleep(2_000);
    }
    await Promise.all(pending);
  } finally {
    await proxy?.stop();
    await other?.stop();
    await grpcProxy?.stop();
    await etcd.stop();
  }

  console.log(`watch flood: ${CONNECTIONS} connections x ${STREAMS} Watch streams (${CONNECTIONS * STREAMS} watches on one prefix of ${KEYS} keys) opened at once, held ${HOLD_MS / 1000} s, then closed`);
  console.log(`probes: a Range of one key every ${PROBE_EVERY_MS} ms, each on a new connection (JSON: POST /v3/kv/range over HTTP/1.1; gRPC: a new channel), timeout ${PROBE_TIMEOUT_MS} ms; latency of the answered ones`);
  console.log(`load average (1/5/15 min) given at each target's start -> end; node ${process.version}\n`);
  for (const row of rows) {
    console.log(`${row.target.name}  (load ${row.load})`);
    console.log(`  streams created ${row.created}/${CONNECTIONS * STREAMS} in ${row.createSeconds.toFixed(2)} s, ${row.createFailed} failed`);
    if (row.loopStallMs !== null) console.log(`  longest event-loop stall of the proxy (its nodejs_eventloop_lag_max_seconds): ${row.loopStallMs.toFixed(0)} ms`);
    console.log(`  JSON probe: ${row.target.json ? probeLine(row.json) : 'no JSON gateway'}`);
    console.log(`  gRPC probe: ${probeLine(row.grpc)}`);
    const after = [...AFTER_SAMPLES_MS, AFTER_MS].map((ms) => `+${ms / 1000} s ${mib(row.rssAfter.get(ms))} (${mib((row.rssAfter.get(ms) ?? NaN) - row.rssBefore)} above)`).join(', ');
    if (TIMELINE) timeline(row);
    console.log(`  RSS MiB: before ${mib(row.rssBefore)}, peak ${mib(row.rssPeak)} (+${mib(row.rssPeak - row.rssBefore)}), after close ${after}\n`);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
