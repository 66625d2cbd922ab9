// Benchmark: unary Range (serializable and linearizable) and Put latency and
// throughput, side by side in one run, through the paths to the same etcd:
// direct, `etcd grpc-proxy`, etcd-cache-proxy (its CLI in its own process,
// reads from its mirror), and two floors that only relay each call as bytes
// (bench/support/relay-floor.ts): grpc-js server and client, the parts the
// proxy's forward path is made of, and Node's bare HTTP/2. Reports ratios to
// direct, and the proxy's upstream calls per 1000 linearizable reads.
//
// --sync-delay-us N makes every disk sync of this proxy's process N us
// longer (bench/support/slow-sync.c), as on a cloud VM's network-attached volume.
//
//   node --import tsx bench/unary-kv.ts [--seconds 5] [--concurrency 32] [--loads Put,...] [--sync-delay-us 0]
//
// CPU per answer is read from /proc around each measurement: the path's
// proxy process (none for direct) and etcd.
import { parseArgs } from 'node:util';
import { startEtcd } from '../test/support/etcd';
import { startProxyProcess } from '../test/support/proxy';
import { call, rawClients, type RawClients } from '../test/support/raw-client';
import { cpuSeconds } from './support/cpu';
import { startGrpcProxy } from './support/grpc-proxy';
import { startRelayFloor } from './support/relay-floor-process';
import { withSlowSync } from './support/slow-sync';

interface Result {
  readonly path: string;
  readonly method: string;
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** CPU ms per answer: the proxy in the path (0 for direct), and etcd. */
  readonly proxyCpuMs: number;
  readonly etcdCpuMs: number;
}

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '32' },
    loads: { type: 'string' },
    'sync-delay-us': { type: 'string', default: '0' },
  },
});
const SYNC_DELAY_US = Number(values['sync-delay-us']);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);

type Load = 'Range serializable' | 'Range linearizable' | 'Put';
const ALL_LOADS: readonly Load[] = ['Range serializable', 'Range linearizable', 'Put'];
const LOADS: readonly Load[] = values.loads === undefined ? ALL_LOADS : ALL_LOADS.filter((load) => values.loads?.split(',').includes(load));

/** The processes whose CPU an answer costs: the proxy in the path (if any) and etcd. */
interface Pids {
  readonly proxy: number | null;
  readonly etcd: number;
}

async function measure(path: string, clients: RawClients, load: Load, pids: Pids): Promise<Result> {
  const method = load === 'Put' ? 'Put' : 'Range';
  const request =
    load === 'Put'
      ? { key: Buffer.from('bench/key'), value: Buffer.alloc(256, 7) }
      : { key: Buffer.from('bench/'), range_end: Buffer.from('bench0'), serializable: load === 'Range serializable' };
  const service = clients.kv;
  for (let i = 0; i < 200; i += 1) await call(service, method, request); // warm-up
  const latencies: number[] = [];
  let errors = 0;
  const stopAt = Date.now() + SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (Date.now() < stopAt) {
      const started = process.hrtime.bigint();
      const outcome = await call(service, method, request);
      latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      if (outcome.error !== null) errors += 1;
    }
  };
  const began = Date.now();
  const proxyCpuBefore = pids.proxy === null ? 0 : cpuSeconds(pids.proxy);
  const etcdCpuBefore = cpuSeconds(pids.etcd);
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = (Date.now() - began) / 1000;
  const perAnswerMs = (seconds: number): number => (seconds * 1000) / Math.max(1, latencies.length);
  const proxyCpuMs = pids.proxy === null ? 0 : perAnswerMs(cpuSeconds(pids.proxy) - proxyCpuBefore);
  const etcdCpuMs = perAnswerMs(cpuSeconds(pids.etcd) - etcdCpuBefore);
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { path, method: load, opsPerSecond: latencies.length / elapsed, p50Ms: at(0.5), p99Ms: at(0.99), errors, proxyCpuMs, etcdCpuMs };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const grpcProxy = await startGrpcProxy(etcd.clientUrl);
  const proxy = await withSlowSync(SYNC_DELAY_US, () => startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']));
  const relays = [await startRelayFloor(etcd.clientAddress, 'grpc-js'), await startRelayFloor(etcd.clientAddress, 'http2')];
  const paths: [string, string, number | null][] = [
    ['etcd direct', etcd.clientAddress, null],
    ['etcd grpc-proxy', grpcProxy.address, grpcProxy.pid],
    ['etcd-cache-proxy', proxy.address, proxy.child.pid ?? null],
    ['relay: grpc-js', relays[0]?.address ?? '', relays[0]?.pid ?? null],
    ['relay: node http2', relays[1]?.address ?? '', relays[1]?.pid ?? null],
  ];
  const results: Result[] = [];
  let barrierCallsPer1000 = NaN;
  try {
    const seed = rawClients(etcd.clientAddress);
    for (let i = 0; i < 10; i += 1) await call(seed.kv, 'Put', { key: Buffer.from(`bench/${i}`), value: Buffer.alloc(256, i) });
    seed.close();
    for (const load of LOADS) {
      for (const [name, address, proxyPid] of paths) {
        const clients = rawClients(address);
        const callsBefore = name === 'etcd-cache-proxy' ? await barrierCalls(address) : 0;
        const result = await measure(name, clients, load, { proxy: proxyPid, etcd: etcd.pid });
        results.push(result);
        if (name === 'etcd-cache-proxy' && load === 'Range linearizable') {
          const reads = result.opsPerSecond * SECONDS;
          barrierCallsPer1000 = ((await barrierCalls(address)) - callsBefore) / (reads / 1000);
        }
        clients.close();
      }
    }
  } finally {
    for (const relay of relays) await relay.stop();
    await proxy.stop();
    await grpcProxy.stop();
    await etcd.stop();
  }
  console.log(`unary ${SECONDS}s per path, ${CONCURRENCY} concurrent callers, one etcd 3.4 on loopback\n`);
  console.log('load                 path               ops/s   vs direct   p50 ms   p99 ms   errors   CPU ms/answer: proxy  etcd');
  for (const r of results) {
    const direct = results.find((d) => d.method === r.method && d.path === 'etcd direct');
    const ratio = direct === undefined ? NaN : r.opsPerSecond / direct.opsPerSecond;
    console.log(
      `${r.method.padEnd(20)} ${r.path.padEnd(17)} ${r.opsPerSecond.toFixed(0).padStart(7)}   ${ratio.toFixed(2).padStart(9)}   ${r.p50Ms.toFixed(2).padStart(6)}   ${r.p99Ms.toFixed(2).padStart(6)}   ${String(r.errors).padStart(6)}   ${r.proxyCpuMs.toFixed(3).padStart(20)}  ${r.etcdCpuMs.toFixed(3)}`,
    );
  }
  if (LOADS.includes('Range linearizable')) console.log(`\netcd-cache-proxy upstream calls per 1000 linearizable reads: ${barrierCallsPer1000.toFixed(1)}`);
}

async function barrierCalls(address: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('etcd_cache_proxy_read_barrier_upstream_calls_total '));
  return Number(line?.split(' ')[1] ?? NaN);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
