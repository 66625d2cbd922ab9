// Benchmark: serializable reads through the proxy while etcd takes writes
// from elsewhere (another client, straight to etcd), as a gateway reads while
// an operator or a controller writes: each write reaches the proxy through
// its mirror's watch and is committed to LMDB. Reports the reads' latency
// (p50, p99, max) and rate, and the proxy's CPU per read, with writes and
// without, side by side in one run.
//
// --sync-delay-us N makes every disk sync of the proxy's process N us longer
// (bench/support/slow-sync.c, compiled with the machine's C compiler and
// preloaded into the proxy only), as on a cloud VM's network-attached volume.
//
//   node --import tsx bench/reads-during-writes.ts [--seconds 5] [--readers 8] [--writers 32] [--sync-delay-us 0]
import { parseArgs } from 'node:util';
import { startEtcd } from '../test/support/etcd';
import { startProxyProcess } from '../test/support/proxy';
import { call, rawClients } from '../test/support/raw-client';
import { cpuSeconds } from './support/cpu';
import { withSlowSync } from './support/slow-sync';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    readers: { type: 'string', default: '8' },
    writers: { type: 'string', default: '32' },
    'sync-delay-us': { type: 'string', default: '0' },
  },
});
const SYNC_DELAY_US = Number(values['sync-delay-us']);
const SECONDS = Number(values.seconds);
const READERS = Number(values.readers);
const WRITERS = Number(values.writers);

interface Result {
  readonly load: string;
  readonly readsPerSecond: number;
  readonly writesPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly proxyCpuMsPerRead: number;
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const proxy = await withSlowSync(SYNC_DELAY_US, () => startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']));
  const direct = rawClients(etcd.clientAddress);
  const through = rawClients(proxy.address);
  const results: Result[] = [];
  try {
    for (let i = 0; i < 100; i += 1) await call(direct.kv, 'Put', { key: Buffer.from(`/apisix/routes/${i}`), value: Buffer.alloc(900, 7) });
    const read = { key: Buffer.from('/apisix/routes/7'), serializable: true };
    for (let i = 0; i < 500; i += 1) await call(through.kv, 'Range', read); // warm-up
    for (const writing of [false, true, false, true]) {
      const latencies: number[] = [];
      let writes = 0;
      const stopAt = Date.now() + SECONDS * 1000;
      const reader = async (): Promise<void> => {
        while (Date.now() < stopAt) {
          const started = process.hrtime.bigint();
          const outcome = await call(through.kv, 'Range', read);
          if (outcome.error !== null) throw outcome.error;
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        }
      };
      const writer = async (n: number): Promise<void> => {
        while (Date.now() < stopAt) {
          await call(direct.kv, 'Put', { key: Buffer.from(`/apisix/upstreams/${n}`), value: Buffer.alloc(256, n) });
          writes += 1;
        }
      };
      const cpuBefore = cpuSeconds(proxy.child.pid ?? 0);
      const began = Date.now();
      await Promise.all([...Array.from({ length: READERS }, reader), ...(writing ? Array.from({ length: WRITERS }, (_, n) => writer(n)) : [])]);
      const elapsed = (Date.now() - began) / 1000;
      const cpu = cpuSeconds(proxy.child.pid ?? 0) - cpuBefore;
      latencies.sort((a, b) => a - b);
      const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
      results.push({
        load: writing ? `reads, ${WRITERS} writers to etcd` : 'reads alone',
        readsPerSecond: latencies.length / elapsed,
        writesPerSecond: writes / elapsed,
        p50Ms: at(0.5),
        p99Ms: at(0.99),
        maxMs: latencies[latencies.length - 1] ?? NaN,
        proxyCpuMsPerRead: (cpu * 1000) / Math.max(1, latencies.length),
      });
    }
  } finally {
    direct.close();
    through.close();
    await proxy.stop();
    await etcd.stop();
  }
  console.log(`serializable Range of one key through etcd-cache-proxy, ${READERS} readers, ${SECONDS}s per load${SYNC_DELAY_US > 0 ? `, the proxy's disk syncs ${SYNC_DELAY_US} us slower` : ''}\n`);
  console.log('load                           reads/s   writes/s   p50 ms   p99 ms   max ms   proxy CPU ms/read');
  for (const r of results) {
    console.log(
      `${r.load.padEnd(30)} ${r.readsPerSecond.toFixed(0).padStart(7)}   ${r.writesPerSecond.toFixed(0).padStart(8)}   ${r.p50Ms.toFixed(2).padStart(6)}   ${r.p99Ms.toFixed(2).padStart(6)}   ${r.maxMs.toFixed(1).padStart(6)}   ${r.proxyCpuMsPerRead.toFixed(3).padStart(17)}`,
    );
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
