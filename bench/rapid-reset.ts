// Benchmark: a "rapid reset" flood (CVE-2023-44487) against etcd-cache-proxy
// (its CLI in its own process, in front of a real etcd). An attacker process
// opens streams on one connection and resets each at once, as fast as it can,
// reconnecting whenever the proxy cuts it off; meanwhile a well-behaved
// client on its own connection times serializable Ranges one after another.
// Prints, per flood: connections cut off, streams each connection got through
// before its GOAWAY and how long that took, the proxy's CPU, and the other
// client's latency next to a run without the flood.
//
//   node --import tsx bench/rapid-reset.ts [--seconds 10]
//
// The node running it runs the proxy too: Node 20 shows nghttp2's default
// limits (1000 resets, then 33/s), Node 22.10+ the proxy's own.
//
// On two cores the attacker would otherwise take the CPU the other client
// needs, and the numbers would say more about the machine than the proxy:
// the proxy gets core 0 to itself, everything else shares core 1, where the
// attacker runs at the lowest priority (it still gets whatever the other
// client leaves idle while it waits for answers).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { serviceMethods, type AnyMethodDefinition } from '../src/etcd/proto';
import { STREAM_RESET_BURST, STREAM_RESET_RATE_PER_S, NODE_HONOURS_STREAM_RESET_LIMITS } from '../src/grpc/http2-limits';
import { startEtcd, stopChild } from '../test/support/etcd';
import { trackProcess } from '../test/support/processes';
import { startProxyProcess } from '../test/support/proxy';
import { floodResets, grpcFrame, type FloodResult } from '../test/support/reset-flood';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    attacker: { type: 'string' },
    body: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(values.seconds);
function kvMethod(name: string): AnyMethodDefinition {
  const definition = serviceMethods('etcdserverpb.KV')[name];
  if (definition === undefined) throw new Error(`no KV.${name} in proto/`);
  return definition;
}
const RANGE = kvMethod('Range');
const PUT = kvMethod('Put');
const RANGE_REQUEST = { key: Buffer.from('bench/reset/key'), serializable: true };

/** The attacker's side, in its own process: one flood after another until the time is up, one JSON line per connection. */
async function attack(address: string, withBody: boolean): Promise<void> {
  const until = Date.now() + SECONDS * 1000;
  const body = withBody ? grpcFrame(RANGE.requestSerialize(RANGE_REQUEST)) : undefined;
  while (Date.now() < until) {
    const result = await floodResets(address, { path: RANGE.path, ...(body === undefined ? {} : { body }), maxStreams: 1e9, maxMs: until - Date.now() });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

/** Pins a process (all its threads) to one core, when taskset is there. */
function pin(pid: number, core: number): void {
  spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Latency {
  readonly calls: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Sequential Ranges on the well-behaved client's own connection for the given time. */
async function timeRanges(client: Client, ms: number): Promise<Latency> {
  const latencies: number[] = [];
  let errors = 0;
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const started = process.hrtime.bigint();
    const error = await new Promise<ServiceError | null>((resolve) =>
      client.makeUnaryRequest(RANGE.path, RANGE.requestSerialize, RANGE.responseDeserialize, RANGE_REQUEST, new Metadata(), {}, (e: ServiceError | null) => resolve(e)),
    );
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
    if (error !== null) errors += 1;
  }
  latencies.sort((a, b) => a - b);
  return { calls: latencies.length, errors, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: latencies[latencies.length - 1] ?? NaN };
}

interface FloodSummary {
  readonly connections: readonly FloodResult[];
  readonly latency: Latency;
  readonly proxyCpuSeconds: number;
}

async function underFlood(address: string, client: Client, proxyPid: number, withBody: boolean): Promise<FloodSummary> {
  const child = spawn('nice', ['-n', '19', process.execPath, '--import', 'tsx', __filename, '--attacker', address, '--seconds', String(SECONDS), ...(withBody ? ['--body'] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (child.pid !== undefined) pin(child.pid, 1);
  trackProcess(child);
  const connections: FloodResult[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => connections.push(JSON.parse(line) as FloodResult));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const cpuBefore = cpuSeconds(proxyPid);
  const latency = await timeRanges(client, SECONDS * 1000);
  const proxyCpuSeconds = cpuSeconds(proxyPid) - cpuBefore;
  await Promise.race([exited, stopChild(child)]);
  return { connections, latency, proxyCpuSeconds };
}

function report(label: string, summary: FloodSummary, baseline: Latency): void {
  const cut = summary.connections.filter((c) => c.goawayCode !== null);
  const processed = cut.map((c) => c.processed).sort((a, b) => a - b);
  const ms = cut.map((c) => c.ms).sort((a, b) => a - b);
  const total = summary.connections.reduce((sum, c) => sum + c.streams, 0);
  console.log(`\n${label}`);
  console.log(`  attacker: ${total} streams reset in ${SECONDS} s (${Math.round(total / SECONDS)}/s) over ${summary.connections.length} connections`);
  console.log(
    `  cut off by GOAWAY: ${cut.length} connections (codes ${[...new Set(cut.map((c) => c.goawayCode))].join(',') || '-'}); ` +
      `streams the proxy took per connection: median ${percentile(processed, 50)}, max ${processed[processed.length - 1] ?? '-'}; ` +
      `time to GOAWAY: median ${percentile(ms, 50)} ms, max ${ms[ms.length - 1] ?? '-'} ms`,
  );
  console.log(`  proxy CPU: ${summary.proxyCpuSeconds.toFixed(1)} s in ${SECONDS} s`);
  const l = summary.latency;
  console.log(
    `  other client's Range: ${l.calls} calls, ${l.errors} errors, p50 ${l.p50Ms.toFixed(2)} ms (${(l.p50Ms / baseline.p50Ms).toFixed(1)}x), ` +
      `p99 ${l.p99Ms.toFixed(2)} ms (${(l.p99Ms / baseline.p99Ms).toFixed(1)}x), max ${l.maxMs.toFixed(1)} ms`,
  );
}

async function main(): Promise<void> {
  if (values.attacker !== undefined) return attack(values.attacker, values.body);
  console.log(
    `node ${process.version}: ${NODE_HONOURS_STREAM_RESET_LIMITS ? `proxy limits, burst ${STREAM_RESET_BURST} then ${STREAM_RESET_RATE_PER_S}/s` : "nghttp2's defaults, burst 1000 then 33/s (this Node ignores the proxy's)"}`,
  );
  const etcd = await startEtcd();
  const proxy = await startProxyProcess([etcd.clientUrl]);
  const client = new Client(proxy.address, credentials.createInsecure());
  pin(proxy.child.pid ?? 0, 0);
  pin(etcd.pid, 1);
  pin(process.pid, 1);
  try {
    await new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(PUT.path, PUT.requestSerialize, PUT.responseDeserialize, { key: RANGE_REQUEST.key, value: Buffer.from('v') }, new Metadata(), {}, (e: ServiceError | null) =>
        e === null ? resolve() : reject(e),
      ),
    );
    const pid = proxy.child.pid ?? 0;
    const cpuBefore = cpuSeconds(pid);
    const baseline = await timeRanges(client, SECONDS * 1000);
    const baselineCpu = cpuSeconds(pid) - cpuBefore;
    console.log(
      `\nno flood: other client's Range: ${baseline.calls} calls, ${baseline.errors} errors, p50 ${baseline.p50Ms.toFixed(2)} ms, p99 ${baseline.p99Ms.toFixed(2)} ms, max ${baseline.maxMs.toFixed(1)} ms; proxy CPU ${baselineCpu.toFixed(1)} s`,
    );
    report('flood of HEADERS + RST_STREAM', await underFlood(proxy.address, client, pid, false), baseline);
    report('flood of HEADERS + a Range request + RST_STREAM', await underFlood(proxy.address, client, pid, true), baseline);
  } finally {
    client.close();
    await proxy.stop();
    await etcd.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
