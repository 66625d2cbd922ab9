// Benchmark: what a proxy costs its machine when little happens, the usual
// day of a gateway's local proxy. Side by side in one run, in front of one
// etcd, each with one gateway-like watch on /apisix/: the proxy as built
// (`dist/`, what `npm start` runs) and `etcd grpc-proxy`.
//
// * idle: CPU ms per second, and wakeups per second (voluntary context
//   switches of all the process's threads, from /proc), over --window-s;
// * a trickle of writes: one Put every 1000/--rate ms straight to etcd for
//   --window-s, CPU ms per event each process spends passing it on (its idle
//   cost included, as the machine pays it).
//
// --compare DIR adds another checkout's proxy, built there (before and after
// a change, in one run).
//
//   npm run build && node --import tsx bench/idle-cpu.ts [--window-s 20] [--settle-s 15] [--rate 10] [--compare DIR]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { startEtcd, sleep } from '../test/support/etcd';
import { REPO_ROOT, startProxyProcess } from '../test/support/proxy';
import { call, rawClients, type RawClients } from '../test/support/raw-client';
import { until } from '../test/support/until';
import { cpuSeconds } from './support/cpu';
import { startGrpcProxy } from './support/grpc-proxy';

const { values } = parseArgs({ options: { 'window-s': { type: 'string', default: '20' }, 'settle-s': { type: 'string', default: '15' }, rate: { type: 'string', default: '10' }, compare: { type: 'string' } } });
const SETTLE_S = Number(values['settle-s']);
const WINDOW_S = Number(values['window-s']);
const RATE = Number(values.rate);

/** Voluntary context switches of every thread of a process: each is a wait that ended, a wakeup. */
function wakeups(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return total;
}

interface Target {
  readonly name: string;
  readonly pid: number;
  readonly clients: RawClients;
  events: number;
}

/** A gateway's watch on /apisix/ through the target, counting the events it receives. */
function watchApisix(target: Target): void {
  const stream = (target.clients.watch as unknown as { Watch(): ClientDuplexStream<object, { events?: unknown[] }> }).Watch();
  stream.on('data', (response) => (target.events += response.events?.length ?? 0));
  stream.on('error', () => undefined);
  stream.write({ create_request: { key: Buffer.from('/apisix/'), range_end: Buffer.from('/apisix0') } });
}

async function main(): Promise<void> {
  const compare = values.compare;
  for (const root of [REPO_ROOT, ...(compare === undefined ? [] : [compare])]) {
    if (!existsSync(join(root, 'dist', 'src', 'cli.js'))) throw new Error(`build first: npm run build in ${root} (the proxy is measured as it runs from dist/)`);
  }
  const etcd = await startEtcd();
  const grpcProxy = await startGrpcProxy(etcd.clientUrl);
  process.env.ECP_PROXY_BUILT = '1';
  const proxies = [await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn'])];
  if (compare !== undefined) {
    process.env.ECP_PROXY_BUILT = compare;
    proxies.push(await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']));
  }
  const direct = rawClients(etcd.clientAddress);
  const targets: Target[] = [
    ...proxies.map((proxy, i) => ({ name: i === 0 ? 'etcd-cache-proxy' : 'compared proxy', pid: proxy.child.pid ?? -1, clients: rawClients(proxy.address), events: 0 })),
    { name: 'etcd grpc-proxy', pid: grpcProxy.pid, clients: rawClients(grpcProxy.address), events: 0 },
  ];
  const rows: string[] = [];
  try {
    for (let i = 0; i < 50; i += 1) await call(direct.kv, 'Put', { key: Buffer.from(`/apisix/routes/${i}`), value: Buffer.alloc(900, i) });
    targets.forEach(watchApisix);
    await sleep(SETTLE_S * 1000); // start-up work settles: lists, the collections V8 makes once a process turns quiet

    const idleBefore = targets.map((t) => ({ cpu: cpuSeconds(t.pid), wakeups: wakeups(t.pid) }));
    await sleep(WINDOW_S * 1000);
    const idle = targets.map((t, i) => ({
      cpuMsPerSecond: ((cpuSeconds(t.pid) - (idleBefore[i]?.cpu ?? 0)) * 1000) / WINDOW_S,
      wakeupsPerSecond: (wakeups(t.pid) - (idleBefore[i]?.wakeups ?? 0)) / WINDOW_S,
    }));

    const writes = Math.round(WINDOW_S * RATE);
    const eventsBefore = targets.map((t) => t.events);
    const trickleBefore = targets.map((t) => cpuSeconds(t.pid));
    for (let i = 0; i < writes; i += 1) {
      const started = Date.now();
      const outcome = await call(direct.kv, 'Put', { key: Buffer.from(`/apisix/routes/${i % 50}`), value: Buffer.alloc(900, i % 256) });
      if (outcome.error !== null) throw outcome.error;
      await sleep(Math.max(0, 1000 / RATE - (Date.now() - started)));
    }
    await until(
      () => 'every watch to receive every write',
      () => targets.every((t, i) => t.events - (eventsBefore[i] ?? 0) >= writes),
      10_000,
    );
    targets.forEach((t, i) => {
      const cpuMsPerEvent = ((cpuSeconds(t.pid) - (trickleBefore[i] ?? 0)) * 1000) / writes;
      const quiet = idle[i];
      rows.push(
        `${t.name.padEnd(18)} ${(quiet?.cpuMsPerSecond ?? NaN).toFixed(1).padStart(14)} ${(quiet?.wakeupsPerSecond ?? NaN).toFixed(0).padStart(14)} ${cpuMsPerEvent.toFixed(2).padStart(20)}`,
      );
    });
  } finally {
    targets.forEach((t) => t.clients.close());
    direct.close();
    for (const proxy of proxies) await proxy.stop();
    await grpcProxy.stop();
    await etcd.stop();
  }
  console.log(`one etcd 3.4 on loopback, one watch on /apisix/ through each; idle ${WINDOW_S} s, then a write every ${(1000 / RATE).toFixed(0)} ms for ${WINDOW_S} s\n`);
  console.log(`path               idle CPU ms/s   idle wakeups/s   CPU ms per event`);
  rows.forEach((row) => console.log(row));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
