// Benchmark: the read every API gateway makes, loading its whole
// configuration prefix. One etcd 3.4 holds --keys (10 000) APISIX-like keys
// of about --value-bytes (900) of JSON under /apisix/ (routes, services,
// upstreams, as APISIX's Admin API writes them), and the whole of /apisix/
// is read in one Range, side by side in one run:
//
//   gRPC  KV/Range key /apisix/ range_end /apisix0, serializable and
//         linearizable, driven by h2load (HTTP/2, a gRPC-framed body file):
//         etcd direct, `etcd grpc-proxy start`, etcd-cache-proxy, and the
//         floor of our stack, a bare grpc-js server answering etcd's own
//         encoded answer from memory (support/floor-server.ts);
//   JSON  POST /v3/kv/range with the same range, serializable and
//         linearizable, driven by h2load --h1 (HTTP/1.1, keep-alive, one
//         request in flight per connection): etcd's own gateway (on its
//         client port) and etcd-cache-proxy's. grpc-proxy has no JSON
//         gateway (see http-gateway.ts).
//
// Per row: req/s, failed requests, body bytes per answer, and CPU time per
// answer of the serving process and of etcd (a linearizable read through a
// proxy touches etcd too), read from /proc/<pid>/stat before and after.
//
//   node --import tsx bench/whole-prefix.ts [--keys 10000] [--value-bytes 900]
//        [--requests 300] [--json-requests 16] [--clients 4] [--streams 1]
//        [--rows TEXT]   (only the rows whose label, e.g. "gRPC linearizable etcd direct", holds TEXT)
//        [--seconds S]   (h2load -D S per row after a 1 s warm-up run, instead of request
//                         counts; requests still in flight at the end are not counted, but
//                         their CPU and bytes are, so per-answer figures lean high)
//
// Every target is checked once outside the timed runs (a gRPC call through
// grpc-js, which fails on any grpc-status other than OK; an HTTP call whose
// JSON is parsed): its whole-prefix answer must count every key. h2load sees
// only HTTP statuses, and a gRPC error comes with status 200, so during the
// timed runs the body bytes per answer are compared with the checked
// answer's size: a row whose answers were short is marked.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ServiceError } from '@grpc/grpc-js';
import { serviceMethods } from '../src/etcd/proto';
import { rawUnary, untilMirrored } from './support/calls';
import { freePort, sleep, startEtcd, stopChild } from '../test/support/etcd';
import { b64, httpCall } from '../test/support/http-gateway';
import { trackProcess } from '../test/support/processes';
import { startProxyProcess, type ProxyProcess } from '../test/support/proxy';
import { call, rawClients } from '../test/support/raw-client';
import { cpuSeconds, machineBusySeconds, reapedChildrenCpuSeconds } from './support/cpu';
import { GRPC_HEADERS, grpcFrame, runH2load, type H2loadResult } from './support/h2load';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '10000' },
    'value-bytes': { type: 'string', default: '900' },
    requests: { type: 'string', default: '300' },
    'json-requests': { type: 'string', default: '16' },
    clients: { type: 'string', default: '4' },
    streams: { type: 'string', default: '1' },
    seconds: { type: 'string' },
    rows: { type: 'string' },
  },
});
const KEYS = Number(values.keys);
const VALUE_BYTES = Number(values['value-bytes']);
const GRPC_REQUESTS = Number(values.requests);
const JSON_REQUESTS = Number(values['json-requests']);
const CLIENTS = Number(values.clients);
const STREAMS = Number(values.streams);
const SECONDS = values.seconds === undefined ? undefined : Number(values.seconds);
/** Only the rows whose label ("gRPC linearizable etcd direct") holds this text. */
const ROWS = values.rows;
/** h2load gives up on a connection silent this long (its requests count as failed)... */
const INACTIVITY_SECONDS = 30;
/** ...and is killed after this long, so a stalled target ends its row, not the run. */
const KILL_AFTER_SECONDS = SECONDS === undefined ? 180 : SECONDS + 60;
const PREFIX = '/apisix/';
const PREFIX_END = '/apisix0';
const SEED_CONCURRENCY = 64;
/** An answer h2load counted is short when its body bytes fall below this share of the checked answer's. */
const SHORT_ANSWER_SHARE = 0.99;

type Read = 'serializable' | 'linearizable';
type Api = 'gRPC' | 'JSON';

// ---------------------------------------------------------------- the data

/** APISIX's Admin API ids: 20 digits, zero-padded. */
const apisixId = (n: number): string => String(n).padStart(20, '0');

/** Each key of the configuration: upstreams first, then services, then routes, as an operator creates them. */
function configurationKeys(total: number): { key: string; value: string }[] {
  const upstreams = Math.max(1, Math.round(total * 0.15));
  const services = Math.max(1, Math.round(total * 0.15));
  const routes = Math.max(0, total - upstreams - services);
  const entries: { key: string; value: string }[] = [];
  for (let i = 1; i <= upstreams; i += 1) entries.push({ key: `${PREFIX}upstreams/${apisixId(i)}`, value: padded(upstream(i)) });
  for (let i = 1; i <= services; i += 1) entries.push({ key: `${PREFIX}services/${apisixId(i)}`, value: padded(service(i, upstreams)) });
  for (let i = 1; i <= routes; i += 1) entries.push({ key: `${PREFIX}routes/${apisixId(i)}`, value: padded(route(i, services, upstreams)) });
  return entries.slice(0, total);
}

const TIMES = { create_time: 1_700_000_000, update_time: 1_712_345_678 };

function upstream(i: number): Record<string, unknown> {
  const node = (n: number): Record<string, unknown> => ({ host: `10.${(i >> 8) & 255}.${i & 255}.${10 + n}`, port: 8080 + n, weight: 100, priority: 0 });
  return {
    id: apisixId(i),
    name: `upstream-${i}`,
    type: i % 3 === 0 ? 'chash' : 'roundrobin',
    ...(i % 3 === 0 ? { hash_on: 'header', key: 'x-user-id' } : {}),
    scheme: 'http',
    pass_host: 'pass',
    nodes: [node(0), node(1), node(2)],
    timeout: { connect: 6, send: 6, read: 60 },
    retries: 2,
    keepalive_pool: { size: 320, idle_timeout: 60, requests: 1000 },
    checks: {
      active: {
        type: 'http',
        http_path: '/healthz',
        timeout: 1,
        healthy: { interval: 2, successes: 2, http_statuses: [200, 302] },
        unhealthy: { interval: 1, http_failures: 3, tcp_failures: 3, timeouts: 3, http_statuses: [429, 500, 502, 503, 504] },
      },
    },
    ...TIMES,
  };
}

function service(i: number, upstreams: number): Record<string, unknown> {
  return {
    id: apisixId(i),
    name: `service-${i}`,
    upstream_id: apisixId(((i - 1) % upstreams) + 1),
    hosts: [`svc-${i}.internal.example.com`, `svc-${i}.example.com`],
    enable_websocket: i % 10 === 0,
    plugins: {
      'limit-req': { rate: 200, burst: 100, key: 'remote_addr', rejected_code: 429, nodelay: false },
      'ip-restriction': { whitelist: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'] },
      'response-rewrite': { headers: { set: { 'X-Service': `service-${i}`, 'Cache-Control': 'no-store' } } },
      prometheus: { prefer_name: true },
    },
    labels: { team: `team-${i % 17}`, env: 'production', tier: i % 2 === 0 ? 'edge' : 'internal' },
    ...TIMES,
  };
}

function route(i: number, services: number, upstreams: number): Record<string, unknown> {
  const owner = i % 4 === 0 ? { upstream_id: apisixId(((i - 1) % upstreams) + 1) } : { service_id: apisixId(((i - 1) % services) + 1) };
  return {
    id: apisixId(i),
    name: `route-${i}`,
    uri: `/api/v1/tenant-${i % 97}/resource-${i}/*`,
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    hosts: [`api-${i % 31}.example.com`],
    ...owner,
    priority: i % 5,
    plugins: {
      'limit-count': { count: 1000, time_window: 60, key_type: 'var', key: 'remote_addr', rejected_code: 503, policy: 'local' },
      'proxy-rewrite': { regex_uri: [`^/api/v1/tenant-${i % 97}/resource-${i}/(.*)`, '/$1'], headers: { set: { 'X-Route-Id': apisixId(i) } } },
      'key-auth': { header: 'apikey', hide_credentials: true },
      cors: { allow_origins: '*', allow_methods: 'GET,POST,PUT,PATCH,DELETE', max_age: 3600 },
    },
    labels: { team: `team-${i % 17}`, env: 'production', version: `v${(i % 3) + 1}` },
    status: 1,
    ...TIMES,
  };
}

const FILLER = 'Managed by the platform team; changes go through the config repository and are applied by CI. ';

/** The object as JSON, with a `desc` that brings it to VALUE_BYTES when it is shorter. */
function padded(object: Record<string, unknown>): string {
  const bare = JSON.stringify({ ...object, desc: '' });
  const missing = Math.max(0, VALUE_BYTES - Buffer.byteLength(bare));
  return JSON.stringify({ ...object, desc: FILLER.repeat(Math.ceil(missing / FILLER.length) + 1).slice(0, missing) });
}

async function seed(address: string, entries: readonly { key: string; value: string }[]): Promise<number> {
  const clients = rawClients(address);
  let next = 0;
  let revision = 0;
  const writer = async (): Promise<void> => {
    for (let i = next++; i < entries.length; i = next++) {
      const entry = entries[i];
      if (entry === undefined) continue;
      const outcome = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: Buffer.from(entry.key), value: Buffer.from(entry.value) });
      if (outcome.error !== null) throw new Error(`seeding ${entry.key}: ${outcome.error.details}`);
      revision = Math.max(revision, Number(outcome.response?.header?.revision ?? 0));
    }
  };
  try {
    await Promise.all(Array.from({ length: SEED_CONCURRENCY }, writer));
  } finally {
    clients.close();
  }
  return revision;
}

// ---------------------------------------------------------------- checking answers

const range = serviceMethods('etcdserverpb.KV').Range;
if (range === undefined) throw new Error('no KV.Range');
const RANGE_METHOD = range;

function rangeRequest(read: Read): Buffer {
  return RANGE_METHOD.requestSerialize({ key: Buffer.from(PREFIX), range_end: Buffer.from(PREFIX_END), ...(read === 'serializable' ? { serializable: true } : {}) });
}

function jsonRequest(read: Read): string {
  return JSON.stringify({ key: b64(PREFIX), range_end: b64(PREFIX_END), ...(read === 'serializable' ? { serializable: true } : {}) });
}

/**
 * One whole-prefix Range over gRPC, outside the timed runs: the encoded
 * answer, after checking that the call ended with grpc-status OK and that
 * the answer holds every key.
 */
async function checkGrpc(name: string, address: string, read: Read): Promise<Buffer> {
  const answer = await rawUnary(address, RANGE_METHOD.path, rangeRequest(read)).catch((error: ServiceError) => {
    throw new Error(`${name}, ${read}: gRPC ${error.code} ${error.details}`);
  });
  const decoded = RANGE_METHOD.responseDeserialize(answer) as { count?: string; kvs?: unknown[] };
  if (decoded.count !== String(KEYS) || decoded.kvs?.length !== KEYS) {
    throw new Error(`${name}, ${read}: count ${decoded.count ?? 'absent'}, ${decoded.kvs?.length ?? 0} kvs, wanted ${KEYS}`);
  }
  return answer;
}

/** The same over the JSON gateway: status 200, and the parsed answer counts and holds every key. Its body length. */
async function checkJson(name: string, baseUrl: string, read: Read): Promise<number> {
  const answer = await httpCall(baseUrl, '/v3/kv/range', jsonRequest(read), { headers: { 'content-type': 'application/json' }, timeoutMs: 30_000 });
  const parsed = answer.json as { count?: string; kvs?: unknown[] } | undefined;
  if (answer.status !== 200 || parsed?.count !== String(KEYS) || parsed.kvs?.length !== KEYS) {
    throw new Error(`${name}, JSON ${read}: HTTP ${answer.status}, count ${parsed?.count ?? 'absent'}, ${parsed?.kvs?.length ?? 0} kvs: ${answer.text.slice(0, 300)}`);
  }
  return Buffer.byteLength(answer.text);
}

// ---------------------------------------------------------------- measuring

interface Target {
  readonly name: string;
  /** Base URL h2load is pointed at. */
  readonly url: string;
  /** The process that serves the answers; etcd's own pid for etcd direct. */
  readonly pid: number;
}

interface Row {
  readonly api: Api;
  readonly read: Read;
  readonly target: string;
  readonly h2load: H2loadResult;
  /** Body bytes of the answer checked outside the run (gRPC: with its 5-byte frame header). */
  readonly expectedBytes: number;
  /** CPU seconds during the measured run. */
  readonly servingCpu: number;
  /** etcd's, when it is not the serving process (NaN for etcd direct). */
  readonly etcdCpu: number;
  readonly h2loadCpu: number;
  /** Busy CPU time of the whole machine not accounted for by the above (other work on the machine, our idle processes). */
  readonly otherCpu: number;
}

function selected(api: Api, read: Read, target: Target): boolean {
  return ROWS === undefined || `${api} ${read} ${target.name}`.includes(ROWS);
}

async function measure(api: Api, read: Read, target: Target, etcdPid: number, bodyFile: string, expectedBytes: number): Promise<Row> {
  const http1 = api === 'JSON';
  const requests = http1 ? JSON_REQUESTS : GRPC_REQUESTS;
  const run = {
    url: `${target.url}${http1 ? '/v3/kv/range' : RANGE_METHOD.path}`,
    bodyFile,
    headers: http1 ? ['content-type: application/json'] : [...GRPC_HEADERS],
    clients: CLIENTS,
    // HTTP/1.1 has no streams; h2load's -m would pipeline, which no gateway client does.
    streams: http1 ? 1 : STREAMS,
    http1,
    inactivitySeconds: INACTIVITY_SECONDS,
    killAfterSeconds: KILL_AFTER_SECONDS,
  };
  const label = `${api} ${read} ${target.name}`;
  // Warm-up outside the measured run (JIT, connections, etcd's and the OS's caches). Not h2load's
  // own --warm-up-time: its traffic counters include the warm-up, and the CPU readings would too.
  const warmUp = await runH2load(SECONDS === undefined ? { ...run, requests: Math.max(CLIENTS, Math.ceil(requests / 10)) } : { ...run, seconds: 1, warmUpSeconds: 0 });
  if (warmUp.killed || warmUp.failed > 0) console.error(`  ${label}, warm-up: ${warmUp.killed ? 'killed' : `${warmUp.failed} failed`}\n${warmUp.output}`);
  const ownEtcd = target.pid === etcdPid;
  const before = { serving: cpuSeconds(target.pid), etcd: cpuSeconds(etcdPid), h2load: reapedChildrenCpuSeconds(), machine: machineBusySeconds() };
  const h2load = await runH2load(SECONDS === undefined ? { ...run, requests } : { ...run, seconds: SECONDS, warmUpSeconds: 0 });
  const servingCpu = cpuSeconds(target.pid) - before.serving;
  const etcdCpu = ownEtcd ? NaN : cpuSeconds(etcdPid) - before.etcd;
  const h2loadCpu = reapedChildrenCpuSeconds() - before.h2load;
  const machine = machineBusySeconds() - before.machine;
  const otherCpu = machine - servingCpu - (ownEtcd ? 0 : etcdCpu) - h2loadCpu;
  const row: Row = { api, read, target: target.name, h2load, expectedBytes, servingCpu, etcdCpu, h2loadCpu, otherCpu };
  console.error(`  ${label}: ${h2load.requestsPerSecond.toFixed(1)} req/s, ${h2load.succeeded}/${h2load.done} ok in ${h2load.seconds.toFixed(1)} s`);
  if (h2load.killed || h2load.failed > 0) console.error(h2load.output);
  return row;
}

// ---------------------------------------------------------------- reporting

const perAnswerMs = (seconds: number, row: Row): number => (seconds / row.h2load.succeeded) * 1000;
const totalCpu = (row: Row): number => row.servingCpu + (Number.isNaN(row.etcdCpu) ? 0 : row.etcdCpu);
const cell = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : '–');

function bytesCell(row: Row): string {
  if (row.h2load.killed) return '–';
  const perAnswer = row.h2load.dataBytes / row.h2load.done;
  const short = perAnswer < row.expectedBytes * SHORT_ANSWER_SHARE;
  return `${(perAnswer / 1e6).toFixed(2)} MB${short ? ` **SHORT** (checked answer: ${(row.expectedBytes / 1e6).toFixed(2)} MB)` : ''}`;
}

function printTable(rows: readonly Row[], valueBytes: number, seedSeconds: number): void {
  const amount = SECONDS === undefined ? `-n ${GRPC_REQUESTS} (gRPC) / ${JSON_REQUESTS} (JSON) after a warm-up of a tenth` : `-D ${SECONDS} s after a 1 s warm-up run`;
  console.log(`\nWhole-prefix Range of ${PREFIX}: ${KEYS} APISIX-like keys, values ${valueBytes} B of JSON on average (seeded in ${seedSeconds.toFixed(1)} s), one etcd 3.4 on loopback.`);
  console.log(`h2load ${amount}, -c ${CLIENTS}, -m ${STREAMS} (gRPC, HTTP/2) / 1 (JSON, --h1). CPU per answer from /proc/<pid>/stat (10 ms ticks); "total" is the serving process plus etcd.`);
  console.log(`"others" is machine CPU busy during the row beyond the processes listed (other work on the machine, idle processes of this bench).\n`);
  console.log('| API | read | target | req/s | failed | body per answer | CPU ms/answer: serving | etcd | total | h2load CPU s | others CPU s |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) {
    console.log(
      `| ${row.api} | ${row.read} | ${row.target} | ${row.h2load.killed ? `stalled: h2load killed after ${KILL_AFTER_SECONDS} s` : cell(row.h2load.requestsPerSecond)} | ${cell(row.h2load.failed, 0)} | ${bytesCell(row)} | ${cell(perAnswerMs(row.servingCpu, row))} | ${cell(perAnswerMs(row.etcdCpu, row))} | ${cell(perAnswerMs(totalCpu(row), row))} | ${cell(row.h2loadCpu)} | ${cell(row.otherCpu)} |`,
    );
  }
  const find = (api: Api, read: Read, target: string): Row | undefined => rows.find((r) => r.api === api && r.read === read && r.target === target);
  const ratio = (label: string, a: Row | undefined, b: Row | undefined): string => {
    if (a === undefined || b === undefined) return `| ${label} | – | – | – |`;
    const rps = a.h2load.requestsPerSecond / b.h2load.requestsPerSecond;
    const serving = perAnswerMs(a.servingCpu, a) / perAnswerMs(b.servingCpu, b);
    const total = perAnswerMs(totalCpu(a), a) / perAnswerMs(totalCpu(b), b);
    return `| ${label} | ${rps.toFixed(2)} | ${serving.toFixed(2)} | ${total.toFixed(2)} |`;
  };
  console.log('\n| ratio | req/s | serving CPU per answer | total CPU per answer |');
  console.log('|---|---|---|---|');
  for (const read of ['serializable', 'linearizable'] as const) {
    console.log(ratio(`gRPC ${read}: etcd-cache-proxy / etcd grpc-proxy`, find('gRPC', read, PROXY), find('gRPC', read, GRPC_PROXY)));
  }
  for (const read of ['serializable', 'linearizable'] as const) {
    console.log(ratio(`gRPC ${read}: etcd-cache-proxy / etcd direct`, find('gRPC', read, PROXY), find('gRPC', read, ETCD)));
  }
  for (const read of ['serializable', 'linearizable'] as const) {
    console.log(ratio(`gRPC ${read}: etcd-cache-proxy / floor`, find('gRPC', read, PROXY), find('gRPC', 'serializable', FLOOR)));
  }
  for (const read of ['serializable', 'linearizable'] as const) {
    console.log(ratio(`JSON ${read}: etcd-cache-proxy / etcd's gateway`, find('JSON', read, PROXY), find('JSON', read, ETCD_GATEWAY)));
  }
}

// ---------------------------------------------------------------- the run

const ETCD = 'etcd direct';
const GRPC_PROXY = 'etcd grpc-proxy';
const PROXY = 'etcd-cache-proxy';
const FLOOR = 'bare grpc-js server (floor)';
const ETCD_GATEWAY = "etcd's JSON gateway";

async function main(): Promise<void> {
  const began = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'ecp-whole-prefix-'));
  const etcd = await startEtcd();
  let grpcProxy: ReturnType<typeof spawn> | null = null;
  let floor: ReturnType<typeof spawn> | null = null;
  let proxy: ProxyProcess | null = null;
  const rows: Row[] = [];
  let valueBytes = 0;
  let seedSeconds = 0;
  try {
    const entries = configurationKeys(KEYS);
    if (entries.length !== KEYS) throw new Error(`--keys ${KEYS}: generated ${entries.length}`);
    valueBytes = Math.round(entries.reduce((sum, e) => sum + Buffer.byteLength(e.value), 0) / entries.length);
    const seedStarted = performance.now();
    const revision = await seed(etcd.clientAddress, entries);
    seedSeconds = (performance.now() - seedStarted) / 1000;
    console.error(`seeded ${KEYS} keys (${valueBytes} B values on average) in ${seedSeconds.toFixed(1)} s, revision ${revision}`);

    const bodies = {
      gRPC: { serializable: join(dir, 'grpc-serializable.bin'), linearizable: join(dir, 'grpc-linearizable.bin') },
      JSON: { serializable: join(dir, 'json-serializable.json'), linearizable: join(dir, 'json-linearizable.json') },
    };
    for (const read of ['serializable', 'linearizable'] as const) {
      writeFileSync(bodies.gRPC[read], grpcFrame(rangeRequest(read)));
      writeFileSync(bodies.JSON[read], jsonRequest(read));
    }

    // etcd's own encoded answer is what the floor serves.
    const etcdAnswer = await checkGrpc(ETCD, etcd.clientAddress, 'serializable');
    const floorAnswerFile = join(dir, 'floor-answer.bin');
    writeFileSync(floorAnswerFile, etcdAnswer);

    const grpcProxyPort = await freePort();
    grpcProxy = spawn('etcd', ['grpc-proxy', 'start', `--endpoints=${etcd.clientUrl}`, `--listen-addr=127.0.0.1:${grpcProxyPort}`, `--data-dir=${join(dir, 'gp')}`], { stdio: 'ignore' });
    trackProcess(grpcProxy);
    const floorPort = await freePort();
    floor = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'support', 'floor-server.ts'), String(floorPort), floorAnswerFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    trackProcess(floor);
    const floorReady = floor.stdout;
    if (floorReady === null) throw new Error('floor server: no stdout');
    await new Promise<void>((resolve) => floorReady.once('data', () => resolve()));
    proxy = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']);
    await untilMirrored(`http://${proxy.address}`, revision);

    const pidOf = (child: ReturnType<typeof spawn>, name: string): number => {
      if (child.pid === undefined) throw new Error(`${name}: no pid`);
      return child.pid;
    };
    const grpcTargets: Target[] = [
      { name: ETCD, url: etcd.clientUrl, pid: etcd.pid },
      { name: GRPC_PROXY, url: `http://127.0.0.1:${grpcProxyPort}`, pid: pidOf(grpcProxy, GRPC_PROXY) },
      { name: PROXY, url: `http://${proxy.address}`, pid: pidOf(proxy.child, PROXY) },
      { name: FLOOR, url: `http://127.0.0.1:${floorPort}`, pid: pidOf(floor, FLOOR) },
    ];
    const jsonTargets: Target[] = [
      { name: ETCD_GATEWAY, url: etcd.clientUrl, pid: etcd.pid },
      { name: PROXY, url: `http://${proxy.address}`, pid: pidOf(proxy.child, PROXY) },
    ];

    // Every target answers every key, before anything is timed. grpc-proxy
    // may take a moment to connect to etcd: retried for a few seconds.
    const expected = new Map<string, number>();
    for (const read of ['serializable', 'linearizable'] as const) {
      for (const target of grpcTargets) {
        if (target.name === FLOOR && read === 'linearizable') continue;
        const address = target.url.slice('http://'.length);
        let answer: Buffer | null = null;
        for (let attempt = 0; answer === null; attempt += 1) {
          try {
            answer = await checkGrpc(target.name, address, read);
          } catch (error) {
            if (attempt >= 20) throw error;
            await sleep(250);
          }
        }
        expected.set(`gRPC ${read} ${target.name}`, answer.length + 5);
        console.error(`checked gRPC ${read} ${target.name}: ${KEYS} keys, ${answer.length} B`);
      }
      for (const target of jsonTargets) {
        expected.set(`JSON ${read} ${target.name}`, await checkJson(target.name, target.url, read));
        console.error(`checked JSON ${read} ${target.name}: ${KEYS} keys, ${expected.get(`JSON ${read} ${target.name}`)} B`);
      }
    }

    for (const read of ['serializable', 'linearizable'] as const) {
      for (const target of grpcTargets) {
        if (target.name === FLOOR && read === 'linearizable') continue; // the floor answers the same bytes whatever is asked
        if (!selected('gRPC', read, target)) continue;
        rows.push(await measure('gRPC', read, target, etcd.pid, bodies.gRPC[read], expected.get(`gRPC ${read} ${target.name}`) ?? NaN));
      }
    }
    for (const read of ['serializable', 'linearizable'] as const) {
      for (const target of jsonTargets.filter((t) => selected('JSON', read, t))) rows.push(await measure('JSON', read, target, etcd.pid, bodies.JSON[read], expected.get(`JSON ${read} ${target.name}`) ?? NaN));
    }
  } finally {
    await proxy?.stop();
    if (grpcProxy !== null) await stopChild(grpcProxy);
    if (floor !== null) await stopChild(floor);
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(rows, valueBytes, seedSeconds);
  console.log(`\nWhole run: ${((performance.now() - began) / 1000).toFixed(0)} s on ${cpus().length} cores.`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
