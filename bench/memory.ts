// Benchmark: memory. Side by side in one run, idle with N keys (default
// 1 000, ~900 B each) in one etcd 3.4: etcd itself, `etcd grpc-proxy`, bare
// Node, the floor of this stack (bench/support/floor-process.ts: grpc-js,
// lmdb, pino and prom-client loaded, listening), and the proxy as its CLI
// built (`dist/`, what `npm start` runs), under tsx, and with --workers 2
// (every process). Each Node process reports its own heap through a preload
// (bench/support/memory-probe.ts); RSS is read from /proc.
//
// Then the built proxy is loaded with reads (gRPC and JSON, whole prefix,
// pages and single keys, serializable and linearizable) and watches while
// etcd takes writes, and its RSS is followed through the load and for
// --after-s seconds after it stops: memory under load is bounded by the
// answer cache and the watch buffers, and should come back near idle.
//
//   npm run build && node --import tsx bench/memory.ts [--keys 1000] [--settle-s 10] [--load-s 30] [--after-s 60] [--rounds 1] [--gc] [--compare DIR] [--with-env 'K=V ...'] [--load-only] [--idle-only]
//
// --idle-only prints the idle table and loads nothing (the same as --load-s 0).
// --with-env 'K=V ...' adds the built proxy once more with that environment
// (LD_PRELOAD of another allocator, glibc's MALLOC_* tunables), idle and
// loaded next to the plain one; --load-only leaves out the tsx and --workers
// proxies (for trying a setting quickly).
//
// --rounds N loads and waits N times (does a second load reuse what the first
// left, or add to it); --gc has each process run a full collection after its
// last sample and report again (a diagnosis: the proxy itself never forces one);
// --compare DIR also measures another checkout's dist/ idle and under the same
// load (before and after a change, side by side). After each load, where the
// RSS sits (/proc/PID/smaps: glibc's main arena `[heap]`, other anonymous
// mappings (V8's pages, other arenas, large Buffers), file-backed) and the
// figure against the targets: back within 20 MiB of idle, the peak under the
// configured budgets.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, startEtcd, stopChild } from '../test/support/etcd';
import { childPids, trackProcess } from '../test/support/processes';
import { REPO_ROOT } from '../test/support/proxy';
import { call, rawClients, type RawClients } from '../test/support/raw-client';
import { sleep, until } from '../test/support/until';
import { WatchClient } from '../test/support/watch-client';
import { untilMirrored } from './support/calls';
import { startGrpcProxy } from './support/grpc-proxy';

/** Within this much of idle a minute after the load: the target. */
const AFTER_TARGET_MiB = 20;
/** The budgets the load measures against: the proxy's defaults (--response-cache-bytes, --watch-buffer-bytes per stream). */
const CACHE_BUDGET_MiB = 128;
const WATCH_BUFFER_MiB = 32;
const WATCH_STREAMS = 10;

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000' },
    'settle-s': { type: 'string', default: '10' },
    'load-s': { type: 'string', default: '30' },
    'after-s': { type: 'string', default: '60' },
    rounds: { type: 'string', default: '1' },
    gc: { type: 'boolean', default: false },
    compare: { type: 'string' },
    'load-only': { type: 'boolean', default: false },
    'idle-only': { type: 'boolean', default: false },
    'with-env': { type: 'string' },
  },
});
const KEYS = Number(values.keys);
const SETTLE_MS = Number(values['settle-s']) * 1000;
/** --idle-only: no load at all, only the idle table. */
const LOAD_MS = values['idle-only'] === true ? 0 : Number(values['load-s']) * 1000;
const AFTER_MS = Number(values['after-s']) * 1000;
/** Load, then quiet, this many times: whether what stays after one load is reused by the next or adds to it. */
const ROUNDS = Number(values.rounds);
/** --compare DIR: another checkout, built (`npm run build` there), measured idle next to this one: before and after a change, in one run. */
const COMPARE = values.compare ?? null;
const PREFIX = '/apisix/routes/';
const PREFIX_END = '/apisix/routes0';
const MiB = 1024 * 1024;
/** --load-only: only the built proxy (and the compared one), for trying a setting under load without the idle table's dozen processes. */
const LOAD_ONLY = values['load-only'] === true;
/** --gc: the probe also runs a full collection after the last sample and reports it (a diagnosis, not how the proxy runs). */
const GC = values.gc === true;

/** Extra Node flags for the proxies measured (as the other benchmarks take them), e.g. ECP_PROXY_NODE_ARGS=--max-semi-space-size=4. */
const PROXY_NODE_ARGS = (process.env.ECP_PROXY_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
/** 'K=V K=V' as an environment. */
function envOf(pairs: string): NodeJS.ProcessEnv {
  return Object.fromEntries(
    pairs
      .split(' ')
      .filter((pair) => pair.includes('='))
      .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  );
}
/** Extra environment for every proxy measured (not the floor nor this process), e.g. ECP_PROXY_ENV='MALLOC_ARENA_MAX=2'. */
const PROXY_ENV = envOf(process.env.ECP_PROXY_ENV ?? '');
/** --with-env 'K=V ...': one more built proxy with this environment, idle and under load next to the plain one (an allocator, say). */
const WITH_ENV = values['with-env'] ?? null;
const DIST_CLI = join(REPO_ROOT, 'dist', 'src', 'cli.js');
const PROBE = join(REPO_ROOT, 'dist', 'bench', 'support', 'memory-probe.js');
const FLOOR = join(REPO_ROOT, 'dist', 'bench', 'support', 'floor-process.js');

interface Measured {
  readonly name: string;
  readonly pid: number;
  /** A Node process with the probe preloaded: it reports its heap. */
  readonly node: boolean;
}

interface Sample {
  readonly rss: number;
  readonly anon: number;
  readonly file: number;
  readonly heapUsed?: number;
  readonly heapTotal?: number;
  readonly external?: number;
  /** V8's young generation (new space), reserved. */
  readonly newSpace?: number;
  readonly afterGc?: { readonly rss: number; readonly heapUsed: number; readonly heapTotal: number; readonly external: number; readonly newSpace: number };
  readonly smaps: Smaps;
}

/** VmRSS, RssAnon and RssFile (+ RssShmem) of a pid, in bytes. */
function procRss(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), anon: kib('RssAnon'), file: kib('RssFile') + kib('RssShmem') };
}

/** Where a process's RSS sits, in bytes, from /proc/PID/smaps. */
interface Smaps {
  /** glibc's main arena (brk): what Node and its libraries malloc'ed below the mmap threshold. */
  readonly heap: number;
  /** Other anonymous mappings: V8's heap pages, glibc's other arenas, large allocations mmapped on their own, stacks. */
  readonly anon: number;
  /** Mapped files: the binary, libraries, LMDB's pages. */
  readonly file: number;
}

function smaps(pid: number): Smaps {
  let heap = 0;
  let anon = 0;
  let file = 0;
  let current: 'heap' | 'anon' | 'file' = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (header !== null) {
      const path = header[1] ?? '';
      current = path === '[heap]' ? 'heap' : path === '' || path.startsWith('[') ? 'anon' : 'file';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss === null) continue;
    const bytes = Number(rss[1]) * 1024;
    if (current === 'heap') heap += bytes;
    else if (current === 'anon') anon += bytes;
    else file += bytes;
  }
  return { heap, anon, file };
}

/** RSS from /proc and, for a Node process, its heap as it reports it on SIGUSR2. */
async function sample(process_: Measured, probeDir: string): Promise<Sample> {
  const rss = { ...procRss(process_.pid), smaps: smaps(process_.pid) };
  if (!process_.node) return rss;
  const file = join(probeDir, `${process_.pid}.json`);
  rmSync(file, { force: true });
  process.kill(process_.pid, 'SIGUSR2');
  await until(`pid ${process_.pid} to report its heap`, () => existsSync(file), 5_000, 20);
  await sleep(20); // the file is written in one call; let it land
  const heap = JSON.parse(readFileSync(file, 'utf8')) as Pick<Sample, 'heapUsed' | 'heapTotal' | 'external' | 'newSpace' | 'afterGc'>;
  return { ...rss, heapUsed: heap.heapUsed, heapTotal: heap.heapTotal, external: heap.external, newSpace: heap.newSpace, afterGc: heap.afterGc };
}

function spawnTracked(command: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  trackProcess(child);
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

interface Started {
  readonly child: ChildProcess;
  readonly address: string;
  readonly dataDir: string;
}

async function startProxy(nodeArgs: readonly string[], endpoint: string, extra: readonly string[], env: NodeJS.ProcessEnv, revision: number, ownEnv: NodeJS.ProcessEnv): Promise<Started> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'ecp-memory-'));
  const child = spawnTracked(process.execPath, ['-r', PROBE, ...PROXY_NODE_ARGS, ...nodeArgs, 'start', '--endpoints', endpoint, '--listen-addr', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log-level', 'warn', ...extra], { ...env, ...PROXY_ENV, ...ownEnv });
  await untilMirrored(`http://127.0.0.1:${port}`, revision);
  return { child, address: `127.0.0.1:${port}`, dataDir };
}

async function seed(clients: RawClients): Promise<number> {
  let revision = 0;
  for (let i = 0; i < KEYS; i += 1) {
    const outcome = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: Buffer.from(routeKey(i)), value: routeValue(i, 0) });
    if (outcome.error !== null) throw outcome.error;
    revision = Number(outcome.response?.header?.revision ?? 0);
  }
  return revision;
}

function routeKey(i: number): string {
  return `${PREFIX}${String(i).padStart(8, '0')}`;
}

function routeValue(i: number, version: number): Buffer {
  return Buffer.from(
    JSON.stringify({ uri: `/r/${i}/*`, version, upstream: { type: 'roundrobin', nodes: { '10.0.0.1:80': 1, '10.0.0.2:80': 1 } }, plugins: {} }).padEnd(900, ' '),
  );
}

/** The proxy's own gauge of kept answers, from its /metrics. */
async function cacheBytes(address: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('etcd_cache_proxy_response_cache_bytes '));
  return Number(line?.split(' ')[1] ?? NaN);
}

interface LoadResult {
  readonly reads: number;
  readonly jsonReads: number;
  readonly events: number;
  readonly writes: number;
  readonly peakRss: number;
  readonly peakCacheBytes: number;
}

/** Reads and watches against `address` for LOAD_MS while etcd takes writes; follows the proxy's RSS meanwhile. */
async function load(address: string, pid: number, etcdClients: RawClients): Promise<LoadResult> {
  const readers = Array.from({ length: 4 }, () => rawClients(address, undefined, { 'grpc.max_receive_message_length': -1, 'grpc.use_local_subchannel_pool': 1 }));
  let events = 0;
  const streams = Array.from({ length: WATCH_STREAMS }, () => new WatchClient(address, { ownConnection: true, keep: false, onResponse: (r) => (events += r.events?.length ?? 0) }));
  await Promise.all(streams.map((s) => s.createAll(Array.from({ length: 100 }, () => ({ key: Buffer.from(PREFIX), range_end: Buffer.from(PREFIX_END) })), 60_000)));
  const stopAt = Date.now() + LOAD_MS;
  let reads = 0;
  let jsonReads = 0;
  let writes = 0;
  let peakRss = 0;
  let peakCacheBytes = 0;
  const grpcReader = async (clients: RawClients, n: number): Promise<void> => {
    while (Date.now() < stopAt) {
      const pick = (n + reads) % 4;
      const start = Math.floor(Math.random() * KEYS);
      const request =
        pick === 0
          ? { key: Buffer.from(PREFIX), range_end: Buffer.from(PREFIX_END), serializable: true }
          : pick === 1
            ? { key: Buffer.from(PREFIX), range_end: Buffer.from(PREFIX_END) }
            : pick === 2
              ? { key: Buffer.from(routeKey(start)), range_end: Buffer.from(PREFIX_END), limit: 100, serializable: true }
              : { key: Buffer.from(routeKey(start)) };
      const outcome = await call(clients.kv, 'Range', request, { deadlineMs: 30_000 });
      if (outcome.error !== null) throw outcome.error;
      reads += 1;
    }
  };
  const jsonReader = async (n: number): Promise<void> => {
    while (Date.now() < stopAt) {
      const start = Math.floor(Math.random() * KEYS);
      const body =
        (n + jsonReads) % 2 === 0
          ? { key: Buffer.from(PREFIX).toString('base64'), range_end: Buffer.from(PREFIX_END).toString('base64') }
          : { key: Buffer.from(routeKey(start)).toString('base64'), range_end: Buffer.from(PREFIX_END).toString('base64'), limit: 100, serializable: true };
      const answer = await fetch(`http://${address}/v3/kv/range`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
      if (!answer.ok) throw new Error(`JSON range: HTTP ${answer.status}`);
      await answer.arrayBuffer();
      jsonReads += 1;
    }
  };
  const writer = async (): Promise<void> => {
    while (Date.now() < stopAt) {
      const i = Math.floor(Math.random() * KEYS);
      const outcome = await call(etcdClients.kv, 'Put', { key: Buffer.from(routeKey(i)), value: routeValue(i, writes + 1) });
      if (outcome.error !== null) throw outcome.error;
      writes += 1;
      await sleep(100);
    }
  };
  const follower = async (): Promise<void> => {
    while (Date.now() < stopAt) {
      peakRss = Math.max(peakRss, procRss(pid).rss);
      peakCacheBytes = Math.max(peakCacheBytes, await cacheBytes(address));
      await sleep(500);
    }
  };
  try {
    await Promise.all([
      ...readers.flatMap((clients, i) => [grpcReader(clients, i), grpcReader(clients, i + 1)]),
      jsonReader(0),
      jsonReader(1),
      writer(),
      follower(),
    ]);
  } finally {
    readers.forEach((clients) => clients.close());
    streams.forEach((stream) => stream.close());
  }
  return { reads, jsonReads, events, writes, peakRss, peakCacheBytes };
}

interface Round {
  readonly result: LoadResult;
  /** RSS and glibc's main arena every 10 s after the load. */
  readonly after: readonly { readonly s: number; readonly rss: number; readonly heap: number }[];
  readonly settled: Sample;
  readonly settledCache: number;
}

const mib = (bytes: number | undefined): string => (bytes === undefined || Number.isNaN(bytes) ? '-' : (bytes / MiB).toFixed(1));

async function main(): Promise<void> {
  if (!existsSync(DIST_CLI) || !existsSync(PROBE) || !existsSync(FLOOR)) throw new Error('build first: npm run build (the proxy is measured as it runs from dist/)');
  if (COMPARE !== null && !existsSync(join(COMPARE, 'dist', 'src', 'cli.js'))) throw new Error(`--compare ${COMPARE}: no dist/src/cli.js there (npm run build in it first)`);
  const probeDir = mkdtempSync(join(tmpdir(), 'ecp-memory-probe-'));
  const env = { ECP_MEMORY_PROBE_DIR: probeDir, ...(GC ? { ECP_MEMORY_PROBE_GC: '1' } : {}) };
  const etcd = await startEtcd();
  const stops: (() => Promise<void>)[] = [() => etcd.stop()];
  try {
    const etcdClients = rawClients(etcd.clientAddress);
    const revision = await seed(etcdClients);
    const grpcProxy = await startGrpcProxy(etcd.clientUrl);
    stops.push(() => grpcProxy.stop());

    const bare = spawnTracked(process.execPath, ['-r', PROBE, '-e', 'setInterval(() => {}, 1 << 30)'], env);
    stops.push(() => stopChild(bare));
    const floorDir = mkdtempSync(join(tmpdir(), 'ecp-memory-floor-'));
    const floor = spawnTracked(process.execPath, ['-r', PROBE, FLOOR, String(await freePort()), floorDir], env);
    stops.push(async () => {
      await stopChild(floor);
      rmSync(floorDir, { recursive: true, force: true });
    });
    let floorListening = false;
    floor.stdout?.on('data', () => (floorListening = true));
    await until('the floor process to listen', () => floorListening, 20_000, 20);

    const proxies: [string, Started][] = [];
    const compared: [string, readonly string[], readonly string[]][] =
      COMPARE === null
        ? []
        : [
            ['compared: etcd-cache-proxy (dist/)', [join(COMPARE, 'dist', 'src', 'cli.js')], []],
            ['compared: --workers 2 (dist/)', [join(COMPARE, 'dist', 'src', 'cli.js')], ['--workers', '2']],
          ];
    const runs = (
      [
        ['etcd-cache-proxy (dist/)', [DIST_CLI], []],
        ...(WITH_ENV === null ? [] : [['etcd-cache-proxy (dist/) with --with-env', [DIST_CLI], []] satisfies [string, readonly string[], readonly string[]]]),
        ['etcd-cache-proxy (tsx)', ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts')], []],
        ['--workers 2 (dist/)', [DIST_CLI], ['--workers', '2']],
        ...compared,
      ] satisfies [string, readonly string[], readonly string[]][]
    ).filter(([name]) => !LOAD_ONLY || !(name.includes('tsx') || name.includes('--workers')));
    for (const [name, nodeArgs, extra] of runs) {
      const started = await startProxy(nodeArgs, etcd.clientUrl, extra, env, revision, name.endsWith('--with-env') && WITH_ENV !== null ? envOf(WITH_ENV) : {});
      proxies.push([name, started]);
      stops.push(async () => {
        await stopChild(started.child);
        rmSync(started.dataDir, { recursive: true, force: true });
      });
    }
    await sleep(SETTLE_MS);

    const measured: Measured[] = [
      { name: 'etcd 3.4 (the upstream)', pid: etcd.pid, node: false },
      { name: 'etcd grpc-proxy', pid: grpcProxy.pid, node: false },
      { name: 'bare node (-e setInterval)', pid: bare.pid ?? -1, node: true },
      { name: 'floor: grpc-js+lmdb+pino+prom-client, listening', pid: floor.pid ?? -1, node: true },
    ];
    for (const [name, started] of proxies) {
      const pid = started.child.pid ?? -1;
      if (!name.includes('--workers')) {
        measured.push({ name, pid, node: true });
        continue;
      }
      measured.push({ name: `${name}: primary (mirror)`, pid, node: true });
      childPids(pid).forEach((worker, i) => measured.push({ name: `${name}: worker ${i + 1}`, pid: worker, node: true }));
    }
    const idle = new Map<string, Sample>();
    for (const m of measured) idle.set(m.name, await sample(m, probeDir));
    const floorRss = idle.get(measured[3]?.name ?? '')?.rss ?? NaN;

    // The built proxy, and the compared one, each loaded in turn (the other idle meanwhile).
    const loaded = proxies.filter(([name]) => !name.includes('--workers') && !name.includes('tsx'));
    const loads: { name: string; before: Sample; rounds: Round[] }[] = [];
    for (const [name, started] of loaded) {
      const pid = started.child.pid ?? -1;
      const before = await sample({ name, pid, node: true }, probeDir);
      const rounds: Round[] = [];
      for (let round = 0; LOAD_MS > 0 && round < ROUNDS; round += 1) {
        const result = await load(started.address, pid, etcdClients);
        const loadEnded = Date.now();
        const after: { s: number; rss: number; heap: number }[] = [];
        while (Date.now() - loadEnded < AFTER_MS) {
          await sleep(Math.min(10_000, AFTER_MS - (Date.now() - loadEnded)));
          after.push({ s: Math.round((Date.now() - loadEnded) / 1000), rss: procRss(pid).rss, heap: smaps(pid).heap });
        }
        rounds.push({ result, after, settled: await sample({ name, pid, node: true }, probeDir), settledCache: await cacheBytes(started.address) });
      }
      loads.push({ name, before, rounds });
    }
    etcdClients.close();

    console.log(`memory, idle ${SETTLE_MS / 1000} s after every proxy mirrored ${KEYS} keys of ~900 B from one etcd 3.4 (MiB; RSS from /proc, heap from process.memoryUsage())\n`);
    if (WITH_ENV !== null) console.log(`--with-env: ${WITH_ENV}\n`);
    const gcColumns = GC ? ` ${'after a full GC: RSS'.padStart(21)} ${'heap used'.padStart(10)} ${'- floor'.padStart(8)}` : '';
    const floorAfterGc = idle.get(measured[3]?.name ?? '')?.afterGc?.rss ?? NaN;
    console.log(`${'process'.padEnd(52)} ${'RSS'.padStart(7)} ${'anon'.padStart(7)} ${'file'.padStart(7)} ${'heap used'.padStart(10)} ${'heap total'.padStart(11)} ${'external'.padStart(9)} ${'RSS - floor'.padStart(12)}${gcColumns}`);
    for (const m of measured) {
      const s = idle.get(m.name);
      if (s === undefined) continue;
      console.log(
        `${m.name.padEnd(52)} ${mib(s.rss).padStart(7)} ${mib(s.anon).padStart(7)} ${mib(s.file).padStart(7)} ${mib(s.heapUsed).padStart(10)} ${mib(s.heapTotal).padStart(11)} ${mib(s.external).padStart(9)} ${(m.node ? mib(s.rss - floorRss) : '').padStart(12)}${
          s.afterGc === undefined ? '' : ` ${mib(s.afterGc.rss).padStart(21)} ${mib(s.afterGc.heapUsed).padStart(10)} ${mib(s.afterGc.rss - floorAfterGc).padStart(8)}`
        }`,
      );
    }
    for (const { name, before, rounds } of loads) {
      for (const [i, { result, after, settled, settledCache }] of rounds.entries()) {
        console.log(
          `\nload ${i + 1} of ${rounds.length} on ${name} for ${LOAD_MS / 1000} s: ${result.reads} gRPC reads and ${result.jsonReads} JSON reads (whole prefix, pages of 100, single keys; serializable and linearizable), ${WATCH_STREAMS * 100} watchers on ${WATCH_STREAMS} streams (${result.events} events delivered), ${result.writes} writes to etcd`,
        );
        const bound = before.rss + (CACHE_BUDGET_MiB + WATCH_STREAMS * WATCH_BUFFER_MiB) * MiB;
        console.log(
          `  RSS idle before the first load ${mib(before.rss)}, peak during ${mib(result.peakRss)} (${mib(result.peakRss - before.rss)} above idle; the budgets allow idle + ${CACHE_BUDGET_MiB} answer cache + ${WATCH_STREAMS} x ${WATCH_BUFFER_MiB} watch buffers = ${mib(bound)}: ${result.peakRss <= bound ? 'within' : 'OVER'}; answer cache at most ${mib(result.peakCacheBytes)})`,
        );
        console.log(`  after the load, RSS (glibc [heap]): ${after.map((a) => `+${a.s} s ${mib(a.rss)} (${mib(a.heap)})`).join(', ')}`);
        const above = settled.rss - before.rss;
        console.log(
          `  ${AFTER_MS / 1000} s after: RSS ${mib(settled.rss)}, ${mib(above)} above idle (target: within ${AFTER_TARGET_MiB}: ${above <= AFTER_TARGET_MiB * MiB ? 'met' : 'NOT met'}), answer cache ${mib(settledCache)}`,
        );
        for (const [when, s] of [['idle before', before], [`${AFTER_MS / 1000} s after`, settled]] as const) {
          console.log(
            `  ${when.padEnd(12)} anon ${mib(s.anon)} (glibc [heap] ${mib(s.smaps.heap)}, other anon ${mib(s.smaps.anon)}), file ${mib(s.file)}, heap used ${mib(s.heapUsed)} of ${mib(s.heapTotal)} (young generation ${mib(s.newSpace)}), external ${mib(s.external)}`,
          );
        }
        const gc = settled.afterGc;
        if (gc !== undefined) console.log(`  then a full GC: RSS ${mib(gc.rss)}, heap used ${mib(gc.heapUsed)} of ${mib(gc.heapTotal)} (young generation ${mib(gc.newSpace)}), external ${mib(gc.external)}`);
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(probeDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
