// Benchmark: etcd's HTTP/JSON gateway (the API APISIX speaks), side by side
// in one run against the same etcd: etcd's own gateway (direct) and
// etcd-cache-proxy (its CLI in its own process, reads and watches from its
// mirror). Two loads:
//
//   range  POST /v3/kv/range of /apisix/routes/ (20 keys of ~300 B JSON),
//          serializable and linearizable (etcd's default), --concurrency
//          callers on keep-alive connections for --seconds: ops/s, p50/p99,
//          errors, ratio to direct;
//   watch  --watchers streaming POST /v3/watch on /apisix, one connection
//          each (as APISIX workers hold them), all opened at once (as a
//          fleet of workers restarting together opens them), then --writes
//          writes made straight to etcd over gRPC 200 ms apart: time from sending each write until the
//          LAST watcher has its event, p50/p99, and every event a watcher
//          missed or got twice.
//
//   node --import tsx bench/http-gateway.ts [--seconds 5] [--concurrency 32] [--watchers 1000] [--writes 20]
//
// `etcd grpc-proxy` is not a path here: checked with curl against Debian's
// etcd 3.4.23, its listener answers /v3/kv/range, /v3/watch and /v3beta/...
// with "404 page not found" over HTTP/1.1 (it serves only /metrics and
// /health there, and has no flag to add the gateway).
//
// The load generator and the watchers live in this process and share the
// cores with etcd and the proxy, so compare ratios within a run; the CPU
// columns say which process the time went to.
import { Agent, request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { sleep, startEtcd } from '../test/support/etcd';
import { b64, HttpStream } from '../test/support/http-gateway';
import { startProxyProcess } from '../test/support/proxy';
import { call, rawClients, type RawClients } from '../test/support/raw-client';
import { untilMirrored } from './support/calls';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '32' },
    watchers: { type: 'string', default: '1000' },
    writes: { type: 'string', default: '20' },
  },
});
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const WATCHERS = Number(values.watchers);
const WRITES = Number(values.writes);
const WRITE_INTERVAL_MS = 200;
/** A write not seen by every watcher within this long is counted as lost where it is missing. */
const WRITE_TIMEOUT_MS = 30_000;
const ROUTES = 20;
const ROUTES_PREFIX = '/apisix/routes/';
const WATCH_PREFIX = '/apisix';
const CREATE_TIMEOUT_MS = 30_000;
/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const CLOCK_TICKS_PER_SECOND = 100;

interface GatewayPath {
  readonly name: string;
  readonly url: string;
}

/** CPU seconds each process spent during one measurement: what the ratios cost, and where. */
interface CpuSplit {
  readonly etcd: number;
  readonly proxy: number;
  readonly bench: number;
}

interface RangeRow {
  readonly path: string;
  readonly load: string;
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly cpu: CpuSplit;
}

interface WatchRow {
  readonly path: string;
  /** Why nothing was measured (the watches could not be opened), or null. */
  readonly failure: string | null;
  readonly setupSeconds: number;
  /** From sending the write to the last watcher having its event, ms, for the writes every watcher got. */
  readonly latencies: number[];
  /** (write, watcher) pairs that never arrived, and pairs that arrived more than once. */
  readonly lost: number;
  readonly duplicated: number;
  /** Watch streams that ended or failed before the last write. */
  readonly brokenStreams: number;
  readonly cpu: CpuSplit;
}

/** An APISIX route as the Admin API stores it, ~300 B, so answers weigh what a gateway's do. */
function routeValue(id: number, revisionNote: string): string {
  return JSON.stringify({
    id: String(id),
    uri: `/api/v1/service-${id}/*`,
    name: `route-${id}`,
    methods: ['GET', 'POST', 'PUT', 'DELETE'],
    upstream: { type: 'roundrobin', scheme: 'http', pass_host: 'pass', nodes: { [`10.0.${id}.10:8080`]: 1, [`10.0.${id}.11:8080`]: 1 } },
    plugins: { 'limit-count': { count: 100, time_window: 60, key: 'remote_addr', rejected_code: 503 } },
    status: 1,
    desc: revisionNote,
    create_time: 1700000000,
    update_time: 1700000000,
  });
}

/** Process CPU time so far, seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

function cpuMeter(etcdPid: number, proxyPid: number): () => CpuSplit {
  const bench = process.cpuUsage();
  const [etcd, proxy] = [cpuSeconds(etcdPid), cpuSeconds(proxyPid)];
  return () => {
    const used = process.cpuUsage(bench);
    return { etcd: cpuSeconds(etcdPid) - etcd, proxy: cpuSeconds(proxyPid) - proxy, bench: (used.user + used.system) / 1e6 };
  };
}

/**
 * One POST on a given keep-alive agent. test/support's httpCall goes through
 * the global agent (no socket cap, so no control over how many connections
 * the load opens) and parses every answer, which would tax this process.
 */
function post(agent: Agent, url: URL, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      url,
      { method: 'POST', agent, timeout: 10_000, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${url.pathname}: no answer within 10 s`)));
    request.on('error', reject);
    request.end(body);
  });
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** CONCURRENCY callers, each posting as soon as its previous answer is in, for `seconds`. */
async function drive(agent: Agent, url: URL, body: string, wholeCount: string, seconds: number): Promise<{ latencies: number[]; errors: number; elapsed: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const stopAt = Date.now() + seconds * 1000;
  const caller = async (): Promise<void> => {
    while (Date.now() < stopAt) {
      const started = performance.now();
      try {
        const answer = await post(agent, url, body);
        if (answer.status !== 200 || !answer.text.includes(wholeCount)) errors += 1;
      } catch {
        errors += 1;
      }
      latencies.push(performance.now() - started);
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, caller));
  return { latencies, errors, elapsed: (performance.now() - began) / 1000 };
}

async function measureRange(path: GatewayPath, load: 'serializable' | 'linearizable', meter: () => () => CpuSplit): Promise<RangeRow> {
  const url = new URL('/v3/kv/range', path.url);
  const body = JSON.stringify({ key: b64(ROUTES_PREFIX), range_end: b64(ROUTES_PREFIX.slice(0, -1) + '0'), ...(load === 'serializable' ? { serializable: true } : {}) });
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  // Counting the keys in every answer would need a parse per request; the
  // warm-up checks the answer in full, the load checks the count field only.
  const wholeCount = `"count":"${ROUTES}"`;
  try {
    const first = await post(agent, url, body);
    const parsed = JSON.parse(first.text) as { kvs?: unknown[] };
    if (first.status !== 200 || parsed.kvs?.length !== ROUTES) throw new Error(`${path.name}: range answered ${first.status} ${first.text.slice(0, 300)}`);
    // In trial runs the proxy's first load (serializable) came out slower than
    // its costlier linearizable one, JIT still warming on both ends: a second
    // of the same load first, thrown away.
    await drive(agent, url, body, wholeCount, Math.min(1, SECONDS));
    const cpu = meter();
    const { latencies, errors, elapsed } = await drive(agent, url, body, wholeCount, SECONDS);
    latencies.sort((a, b) => a - b);
    return { path: path.name, load, opsPerSecond: latencies.length / elapsed, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), errors, cpu: cpu() };
  } finally {
    agent.destroy();
  }
}

interface WatchEvent {
  kv?: { mod_revision?: string };
}

async function measureWatch(path: GatewayPath, writer: RawClients, meter: () => () => CpuSplit): Promise<WatchRow> {
  const body = JSON.stringify({ create_request: { key: b64(WATCH_PREFIX), range_end: b64(`${WATCH_PREFIX}0`) } });
  const setupStarted = performance.now();
  const streams: HttpStream[] = [];
  const isCreated = (stream: HttpStream): boolean => stream.objects.some((o) => (o.result as { created?: boolean } | undefined)?.created === true);
  try {
    for (let i = 0; i < WATCHERS; i += 1) streams.push(new HttpStream(path.url, '/v3/watch', { body }));
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
    while (!streams.every(isCreated)) {
      if (Date.now() > deadline || streams.some((stream) => stream.ended && !isCreated(stream))) {
        const failure = `${streams.filter(isCreated).length} of ${WATCHERS} watches had their created answer after ${CREATE_TIMEOUT_MS / 1000} s`;
        return { path: path.name, failure, setupSeconds: NaN, latencies: [], lost: NaN, duplicated: NaN, brokenStreams: NaN, cpu: { etcd: NaN, proxy: NaN, bench: NaN } };
      }
      await sleep(20);
    }
    const setupSeconds = (performance.now() - setupStarted) / 1000;
    await sleep(1_000); // let the servers settle after the connection storm

    // HttpStream keeps what arrived in `objects` and offers no callback, so
    // arrivals are picked up by polling each millisecond from a timer that
    // runs while a write is still in flight (events often beat its answer):
    // a time is late by at most one tick of this process's event loop.
    const cursors = new Array<number>(WATCHERS).fill(0);
    const seenBy = streams.map(() => new Set<string>());
    const arrivals = new Map<string, { count: number; lastAt: number }>();
    let duplicated = 0;
    const collect = (): void => {
      const now = performance.now();
      streams.forEach((stream, i) => {
        const objects = stream.objects;
        for (let cursor = cursors[i] ?? 0; cursor < objects.length; cursor += 1) {
          const result = objects[cursor]?.result as { events?: WatchEvent[] } | undefined;
          for (const event of result?.events ?? []) {
            const revision = event.kv?.mod_revision ?? '?';
            const seen = seenBy[i];
            if (seen?.has(revision) === true) {
              duplicated += 1;
              continue;
            }
            seen?.add(revision);
            const entry = arrivals.get(revision) ?? { count: 0, lastAt: 0 };
            entry.count += 1;
            entry.lastAt = Math.max(entry.lastAt, now);
            arrivals.set(revision, entry);
          }
        }
        cursors[i] = objects.length;
      });
    };

    const cpu = meter();
    const poller = setInterval(collect, 1);
    const latencies: number[] = [];
    let lost = 0;
    try {
      for (let write = 0; write < WRITES; write += 1) {
        const id = (write % ROUTES) + 1;
        const sent = performance.now();
        const outcome = await call<{ header?: { revision?: string } }>(writer.kv, 'Put', {
          key: Buffer.from(`${ROUTES_PREFIX}${id}`),
          value: Buffer.from(routeValue(id, `bench write ${write}`)),
        });
        const revision = outcome.response?.header?.revision;
        if (outcome.error !== null || revision === undefined) throw new Error(`write ${write}: ${outcome.error?.details ?? 'no revision'}`);
        const deadline = performance.now() + WRITE_TIMEOUT_MS;
        while ((arrivals.get(revision)?.count ?? 0) < WATCHERS && performance.now() < deadline) await sleep(1);
        collect();
        const entry = arrivals.get(revision);
        const count = entry?.count ?? 0;
        if (entry !== undefined && count >= WATCHERS) latencies.push(entry.lastAt - sent);
        lost += WATCHERS - count;
        await sleep(WRITE_INTERVAL_MS);
      }
    } finally {
      clearInterval(poller);
    }
    const brokenStreams = streams.filter((stream) => stream.ended).length;
    return { path: path.name, failure: null, setupSeconds, latencies, lost, duplicated, brokenStreams, cpu: cpu() };
  } finally {
    streams.forEach((stream) => stream.close());
    await sleep(1_000); // let the servers drop the streams before the next path
  }
}

const cpuCell = (cpu: CpuSplit): string => `${cpu.etcd.toFixed(1)} / ${cpu.proxy.toFixed(1)} / ${cpu.bench.toFixed(1)}`;

function printRangeTable(ranges: readonly RangeRow[]): void {
  console.log(`HTTP/JSON gateway, one etcd 3.4 on loopback; etcd grpc-proxy has no HTTP gateway (404), not measured\n`);
  console.log(`Range of ${ROUTES} keys (~300 B values), ${CONCURRENCY} concurrent callers on keep-alive connections, ${SECONDS} s per row:\n`);
  console.log('| load | path | ops/s | vs direct | p50 ms | p99 ms | errors | CPU s etcd / proxy / bench |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const row of ranges) {
    const direct = ranges.find((d) => d.load === row.load && d.path === 'etcd direct');
    const ratio = direct === undefined ? NaN : row.opsPerSecond / direct.opsPerSecond;
    console.log(`| ${row.load} | ${row.path} | ${row.opsPerSecond.toFixed(0)} | ${ratio.toFixed(2)} | ${row.p50Ms.toFixed(1)} | ${row.p99Ms.toFixed(1)} | ${row.errors} | ${cpuCell(row.cpu)} |`);
  }
}

function printWatchTable(watches: readonly WatchRow[]): void {
  console.log(`\nWatch fan-out: ${WATCHERS} HTTP watches on ${WATCH_PREFIX} (one connection each, all opened at once), ${WRITES} writes to etcd over gRPC ${WRITE_INTERVAL_MS} ms apart; latency from sending a write until the last watcher has it:\n`);
  console.log('| path | setup s | p50 ms | p99 ms | p50 / p99 vs direct | lost / duplicated events | broken streams | CPU s etcd / proxy / bench |');
  console.log('|---|---|---|---|---|---|---|---|');
  const direct = watches.find((w) => w.path === 'etcd direct');
  const directSorted = [...(direct?.latencies ?? [])].sort((a, b) => a - b);
  for (const row of watches) {
    if (row.failure !== null) {
      console.log(`| ${row.path} | failed: ${row.failure} | | | | | | |`);
      continue;
    }
    const sorted = [...row.latencies].sort((a, b) => a - b);
    const [p50, p99] = [quantile(sorted, 0.5), quantile(sorted, 0.99)];
    const vs = `${(p50 / quantile(directSorted, 0.5)).toFixed(2)} / ${(p99 / quantile(directSorted, 0.99)).toFixed(2)}`;
    console.log(`| ${row.path} | ${row.setupSeconds.toFixed(2)} | ${p50.toFixed(1)} | ${p99.toFixed(1)} | ${vs} | ${row.lost} / ${row.duplicated} | ${row.brokenStreams} | ${cpuCell(row.cpu)} |`);
  }
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  let proxy: Awaited<ReturnType<typeof startProxyProcess>> | null = null;
  const writer = rawClients(etcd.clientAddress);
  const ranges: RangeRow[] = [];
  const watches: WatchRow[] = [];
  try {
    let seededRevision = 0;
    for (let id = 1; id <= ROUTES; id += 1) {
      const outcome = await call<{ header?: { revision?: string } }>(writer.kv, 'Put', { key: Buffer.from(`${ROUTES_PREFIX}${id}`), value: Buffer.from(routeValue(id, 'seed')) });
      if (outcome.error !== null) throw new Error(`seeding: ${outcome.error.details}`);
      seededRevision = Number(outcome.response?.header?.revision ?? 0);
    }
    proxy = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']);
    await untilMirrored(`http://${proxy.address}`, seededRevision, 20_000);
    const proxyPid = proxy.child.pid ?? -1;
    const meter = (): (() => CpuSplit) => cpuMeter(etcd.pid, proxyPid);
    const paths: GatewayPath[] = [
      { name: 'etcd direct', url: etcd.clientUrl },
      { name: 'etcd-cache-proxy', url: `http://${proxy.address}` },
    ];
    for (const load of ['serializable', 'linearizable'] as const) {
      for (const path of paths) ranges.push(await measureRange(path, load, meter));
    }
    // Printed now: the watch phase takes longer and may fail, and should not take these numbers with it.
    printRangeTable(ranges);
    for (const path of paths) watches.push(await measureWatch(path, writer, meter));
  } finally {
    writer.close();
    await proxy?.stop();
    await etcd.stop();
  }
  printWatchTable(watches);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
