// Benchmark: Range throughput with a load generator that is not the
// bottleneck (h2load, from Debian's nghttp2-client, in C), side by side in
// one run: etcd direct, `etcd grpc-proxy`, etcd-cache-proxy with --workers 1
// and with --workers 2 (serializable and linearizable, from its mirror), and
// the floor of the stack, a bare grpc-js server answering etcd's own encoded
// answer to the same read from memory, as one process and as two (Node's
// cluster, as --workers shares its port).
//
// Each path runs `--rounds` times, the paths taking turns, and the median
// rate is reported: on a shared 2-core machine one run of each, back to back,
// moves the ratios by 20% from one run to the next. The CPU each request cost
// the serving processes (a process and its children), and etcd behind it, is read from /proc over all rounds:
// on this machine etcd, the load generator and the server share two cores, so
// what one of them burns slows the others.
//
//   node --import tsx bench/h2load-range.ts [--requests 100000] [--clients 8] [--streams 16] [--rounds 3]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { serviceMethods } from '../src/etcd/proto';
import { cpuSeconds, treeCpuSeconds } from './support/cpu';
import { freePort, sleep, startEtcd, stopChild } from '../test/support/etcd';
import { trackProcess } from '../test/support/processes';
import { startProxyProcess } from '../test/support/proxy';
import { call, rawClients } from '../test/support/raw-client';
import { rawUnary } from './support/calls';
import { GRPC_HEADERS, grpcFrame, runH2load } from './support/h2load';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '100000' },
    clients: { type: 'string', default: '8' },
    streams: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
  },
});

interface Row {
  readonly path: string;
  readonly requestsPerSecond: number;
  readonly failed: number;
  /** CPU the serving process spent per request, µs. */
  readonly serverMicros: number;
  /** CPU etcd spent per request while a proxy served it, µs. */
  readonly etcdMicros: number;
}

/** Where a path's requests go, and which processes' CPU they cost. */
interface Path {
  readonly path: string;
  readonly address: string;
  readonly body: string;
  readonly serverPid: number;
  readonly etcdPid: number | null;
}

async function h2load(address: string, bodyFile: string, requests = values.requests ?? '100000'): Promise<{ requestsPerSecond: number; failed: number }> {
  const result = await runH2load({
    url: `http://${address}/etcdserverpb.KV/Range`,
    bodyFile,
    headers: GRPC_HEADERS,
    requests: Number(requests),
    clients: Number(values.clients ?? '8'),
    streams: Number(values.streams ?? '16'),
  });
  return { requestsPerSecond: result.requestsPerSecond, failed: result.failed };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ecp-h2load-'));
  const range = serviceMethods('etcdserverpb.KV').Range;
  if (range === undefined) throw new Error('no KV.Range');
  const bodies = {
    serializable: join(dir, 'serializable.bin'),
    linearizable: join(dir, 'linearizable.bin'),
  };
  const request = { key: Buffer.from('bench/'), range_end: Buffer.from('bench0') };
  writeFileSync(bodies.serializable, grpcFrame(range.requestSerialize({ ...request, serializable: true })));
  writeFileSync(bodies.linearizable, grpcFrame(range.requestSerialize(request)));

  const etcd = await startEtcd();
  const seed = rawClients(etcd.clientAddress);
  for (let i = 0; i < 10; i += 1) await call(seed.kv, 'Put', { key: Buffer.from(`bench/${i}`), value: Buffer.alloc(256, i) });
  seed.close();
  // The floor answers with etcd's own encoded answer to the same read, so every path sends the same bytes.
  const answerFile = join(dir, 'answer.bin');
  writeFileSync(answerFile, await rawUnary(etcd.clientAddress, range.path, range.requestSerialize({ ...request, serializable: true })));
  const grpcProxyPort = await freePort();
  const grpcProxy = spawn('etcd', ['grpc-proxy', 'start', `--endpoints=${etcd.clientUrl}`, `--listen-addr=127.0.0.1:${grpcProxyPort}`, `--data-dir=${join(dir, 'gp')}`], { stdio: 'ignore' });
  trackProcess(grpcProxy);
  const startFloor = async (processes: number): Promise<{ child: ReturnType<typeof spawn>; port: number }> => {
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'support', 'floor-server.ts'), String(port), answerFile, String(processes)], { stdio: ['ignore', 'pipe', 'inherit'] });
    trackProcess(child);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    return { child, port };
  };
  const floors = [await startFloor(1), await startFloor(2)];
  const proxies = [await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']), await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn', '--workers', '2'])];
  await sleep(1000);

  const pidOf = (child: { pid?: number | undefined }): number => child.pid ?? -1;
  const paths: Path[] = [];
  for (const [kind, body] of Object.entries(bodies)) {
    for (const [path, address, serverPid, etcdPid] of [
      ['etcd direct', etcd.clientAddress, etcd.pid, null],
      ['etcd grpc-proxy', `127.0.0.1:${grpcProxyPort}`, pidOf(grpcProxy), etcd.pid],
      ['etcd-cache-proxy', proxies[0]?.address ?? '', pidOf(proxies[0]?.child ?? {}), etcd.pid],
      ['etcd-cache-proxy --workers 2', proxies[1]?.address ?? '', pidOf(proxies[1]?.child ?? {}), etcd.pid],
    ] as const) {
      paths.push({ path: `${path}, ${kind}`, address, body, serverPid, etcdPid });
    }
  }
  floors.forEach(({ child, port }, i) =>
    paths.push({ path: `bare grpc-js server x${i + 1} (floor)`, address: `127.0.0.1:${port}`, body: bodies.serializable, serverPid: pidOf(child), etcdPid: null }),
  );
  const runs = new Map<string, { requestsPerSecond: number; failed: number; serverSeconds: number; etcdSeconds: number }[]>();
  try {
    for (const { address, body } of paths) await h2load(address, body, '5000'); // warm-up: JIT, connections, caches
    for (let round = 0; round < Number(values.rounds ?? '3'); round += 1) {
      for (const { path, address, body, serverPid, etcdPid } of paths) {
        const serverBefore = treeCpuSeconds(serverPid);
        const etcdBefore = etcdPid === null ? 0 : cpuSeconds(etcdPid);
        const result = await h2load(address, body);
        const serverSeconds = treeCpuSeconds(serverPid) - serverBefore;
        const etcdSeconds = etcdPid === null ? 0 : cpuSeconds(etcdPid) - etcdBefore;
        runs.set(path, [...(runs.get(path) ?? []), { ...result, serverSeconds, etcdSeconds }]);
      }
    }
  } finally {
    for (const proxy of proxies) await proxy.stop();
    await stopChild(grpcProxy);
    for (const { child } of floors) await stopChild(child);
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const rows: Row[] = paths.map(({ path }) => {
    const results = runs.get(path) ?? [];
    const rates = results.map((r) => r.requestsPerSecond).sort((a, b) => a - b);
    const requests = results.length * Number(values.requests);
    const behindEtcd = paths.find((p) => p.path === path)?.etcdPid !== null;
    const micros = (seconds: number): number => (seconds / requests) * 1e6;
    return {
      path,
      requestsPerSecond: rates[Math.floor(rates.length / 2)] ?? NaN,
      failed: results.reduce((sum, r) => sum + r.failed, 0),
      serverMicros: micros(results.reduce((sum, r) => sum + r.serverSeconds, 0)),
      etcdMicros: behindEtcd ? micros(results.reduce((sum, r) => sum + r.etcdSeconds, 0)) : NaN,
    };
  });
  const direct = (kind: string): number => rows.find((r) => r.path === `etcd direct, ${kind}`)?.requestsPerSecond ?? NaN;
  const floorRate = rows.find((r) => r.path.startsWith('bare grpc-js server x1'))?.requestsPerSecond ?? NaN;
  console.log(`h2load -n ${values.requests} -c ${values.clients} -m ${values.streams}, Range of 10 keys x 256 B, one etcd 3.4 on loopback; median of ${values.rounds} rounds\n`);
  console.log('path                                               req/s   vs direct   vs floor x1   CPU µs/req   + etcd µs/req   failed');
  for (const row of rows) {
    const kind = row.path.endsWith('linearizable') ? 'linearizable' : 'serializable';
    console.log(
      `${row.path.padEnd(48)} ${row.requestsPerSecond.toFixed(0).padStart(8)}   ${(row.requestsPerSecond / direct(kind)).toFixed(2).padStart(9)}   ${(row.requestsPerSecond / floorRate).toFixed(2).padStart(11)}   ${row.serverMicros.toFixed(1).padStart(10)}   ${(Number.isNaN(row.etcdMicros) ? '-' : row.etcdMicros.toFixed(1)).padStart(13)}   ${String(row.failed).padStart(6)}`,
    );
  }
  const rate = (path: string): number => rows.find((r) => r.path === path)?.requestsPerSecond ?? NaN;
  const ratio = (a: number, b: number): string => (a / b).toFixed(2);
  console.log(`\n--workers 2, serializable: ${ratio(rate('etcd-cache-proxy --workers 2, serializable'), rate('bare grpc-js server x2 (floor)'))}x the floor as 2 processes, ${ratio(rate('etcd-cache-proxy --workers 2, serializable'), rate('etcd-cache-proxy, serializable'))}x --workers 1`);
  console.log(`--workers 2, linearizable: ${ratio(rate('etcd-cache-proxy --workers 2, linearizable'), direct('linearizable'))}x etcd direct, ${ratio(rate('etcd-cache-proxy --workers 2, linearizable'), rate('etcd-cache-proxy, linearizable'))}x --workers 1`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
