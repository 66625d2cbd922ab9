// Benchmark: watch fan-out. N watchers on one prefix, spread over M streams
// (each stream its own TCP connection, as M client processes would hold
// them), then a series of writes made straight to etcd. For each write, the
// time until the LAST of the N watchers has the event; p50/p99 over the
// writes. Side by side in one run: etcd direct, `etcd grpc-proxy` and
// etcd-cache-proxy (its CLI in its own process, watches from its mirror),
// with one serving process and with --workers 2.
// Also: the serving process's RSS growth per watcher, and how many watchers
// etcd itself holds for the N (its own /metrics).
//
//   node --import tsx bench/watch-fanout.ts [--watchers 10000] [--streams 100] [--writes 50] [--interval-ms 200]
//
// The watchers live in this process, so on a small machine it competes with
// the servers for the cores: compare ratios within a run.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { sleep, startEtcd, type EtcdServer } from '../test/support/etcd';
import { startProxyProcess } from '../test/support/proxy';
import { call, rawClients, type RawClients } from '../test/support/raw-client';
import { WatchClient } from '../test/support/watch-client';
import { processTree } from './support/cpu';
import { startGrpcProxy } from './support/grpc-proxy';

const { values } = parseArgs({
  options: {
    watchers: { type: 'string', default: '10000' },
    streams: { type: 'string', default: '100' },
    writes: { type: 'string', default: '50' },
    'interval-ms': { type: 'string', default: '200' },
  },
});
const WATCHERS = Number(values.watchers);
const STREAMS = Math.min(Number(values.streams), WATCHERS);
const WRITES = Number(values.writes);
const INTERVAL_MS = Number(values['interval-ms']);
/** A write not seen by every watcher within this long counts as incomplete. */
const WRITE_TIMEOUT_MS = 30_000;
const PREFIX = 'fanout/';

interface Path {
  readonly name: string;
  readonly address: string;
  /** The process whose memory the watchers cost. */
  readonly pid: number;
}

interface Row {
  readonly path: string;
  readonly setupSeconds: number;
  /** From the write's response to the last watcher having its event, ms. */
  readonly afterAck: number[];
  /** From sending the write to the last watcher having its event, ms. */
  readonly afterSend: number[];
  readonly incomplete: number;
  readonly rssPerWatcherBytes: number;
  /** Watchers and watch streams etcd added for this path's watchers. */
  readonly etcdWatchers: number;
  readonly etcdWatchStreams: number;
}

/** Resident memory of a process and its descendants (a proxy with --workers). */
function rssBytes(pid: number): number {
  return processTree(pid).reduce((sum, one) => sum + processRssBytes(one), 0);
}

function processRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib) * 1024;
}

async function etcdGauge(etcd: EtcdServer, name: string): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

async function measure(path: Path, etcd: EtcdServer, writer: RawClients): Promise<Row> {
  // Per write (by the value it wrote): how many watchers have it, and when the last one got it.
  const seen = new Map<number, { count: number; lastAt: number }>();
  const onResponse = (response: { events?: { kv?: { value?: Buffer } }[] }, at: number): void => {
    for (const event of response.events ?? []) {
      const write = Number(event.kv?.value?.toString());
      const entry = seen.get(write) ?? { count: 0, lastAt: 0 };
      entry.count += 1;
      entry.lastAt = Math.max(entry.lastAt, at);
      seen.set(write, entry);
    }
  };
  const rssBefore = rssBytes(path.pid);
  // etcd also holds the other paths' own watches (the proxies' idle upstream watches): count what this path adds.
  const [watchersBefore, streamsBefore] = [await etcdGauge(etcd, 'etcd_debugging_mvcc_watcher_total'), await etcdGauge(etcd, 'etcd_debugging_mvcc_watch_stream_total')];
  const setupStarted = performance.now();
  const streams = Array.from({ length: STREAMS }, () => new WatchClient(path.address, { ownConnection: true, keep: false, onResponse }));
  try {
    await Promise.all(
      streams.map((stream, i) => {
        const count = Math.floor(WATCHERS / STREAMS) + (i < WATCHERS % STREAMS ? 1 : 0);
        return stream.createAll(
          Array.from({ length: count }, () => ({ key: Buffer.from(PREFIX), range_end: Buffer.from('fanout0') })),
          120_000,
        );
      }),
    );
    const setupSeconds = (performance.now() - setupStarted) / 1000;
    await sleep(1_000); // let the server settle before reading its memory
    const rssPerWatcherBytes = (rssBytes(path.pid) - rssBefore) / WATCHERS;
    const etcdWatchers = (await etcdGauge(etcd, 'etcd_debugging_mvcc_watcher_total')) - watchersBefore;
    const etcdWatchStreams = (await etcdGauge(etcd, 'etcd_debugging_mvcc_watch_stream_total')) - streamsBefore;

    const afterAck: number[] = [];
    const afterSend: number[] = [];
    let incomplete = 0;
    for (let write = 0; write < WRITES; write += 1) {
      const sent = performance.now();
      const outcome = await call(writer.kv, 'Put', { key: Buffer.from(`${PREFIX}key`), value: Buffer.from(String(write)) });
      const acked = performance.now();
      if (outcome.error !== null) throw new Error(`write ${write}: ${outcome.error.details}`);
      const deadline = acked + WRITE_TIMEOUT_MS;
      while ((seen.get(write)?.count ?? 0) < WATCHERS && performance.now() < deadline) await sleep(1);
      const entry = seen.get(write);
      if (entry === undefined || entry.count < WATCHERS) incomplete += 1;
      else {
        afterAck.push(entry.lastAt - acked);
        afterSend.push(entry.lastAt - sent);
      }
      await sleep(INTERVAL_MS);
    }
    const extra = [...seen.values()].filter((entry) => entry.count > WATCHERS).length;
    if (extra > 0) throw new Error(`${path.name}: ${extra} writes reached some watcher twice`);
    return { path: path.name, setupSeconds, afterAck, afterSend, incomplete, rssPerWatcherBytes, etcdWatchers, etcdWatchStreams };
  } finally {
    streams.forEach((stream) => stream.close());
    await sleep(1_000); // let the servers drop the streams before the next path
  }
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function summary(samples: readonly number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const grpcProxy = await startGrpcProxy(etcd.clientUrl);
  const proxy = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn']);
  const proxy2 = await startProxyProcess([etcd.clientUrl], ['--log-level', 'warn', '--workers', '2']);
  const writer = rawClients(etcd.clientAddress);
  const rows: Row[] = [];
  try {
    const paths: Path[] = [
      { name: 'etcd direct', address: etcd.clientAddress, pid: etcd.pid },
      { name: 'etcd grpc-proxy', address: grpcProxy.address, pid: grpcProxy.pid },
      { name: 'etcd-cache-proxy', address: proxy.address, pid: proxy.child.pid ?? -1 },
      { name: 'ecp --workers 2', address: proxy2.address, pid: proxy2.child.pid ?? -1 },
    ];
    for (const path of paths) rows.push(await measure(path, etcd, writer));
  } finally {
    writer.close();
    await proxy.stop();
    await proxy2.stop();
    await grpcProxy.stop();
    await etcd.stop();
  }

  console.log(`watch fan-out: ${WATCHERS} watchers on one prefix over ${STREAMS} streams (one connection each), ${WRITES} writes ${INTERVAL_MS} ms apart, one etcd 3.4 on loopback\n`);
  console.log('latency = until the last watcher has the event; "after ack" from the write\'s response, "after send" from sending it (ms)');
  console.log('RSS/watcher = growth of the serving process (etcd itself for direct) / watchers; etcd +watchers = what etcd added for them\n');
  console.log('path               setup s   after ack p50    p99   after send p50    p99   p50 vs direct   p99 vs direct   incomplete   RSS/watcher   etcd +watchers / +streams');
  const direct = rows.find((r) => r.path === 'etcd direct');
  const directSend = summary(direct?.afterSend ?? []);
  for (const row of rows) {
    const ack = summary(row.afterAck);
    const send = summary(row.afterSend);
    console.log(
      [
        row.path.padEnd(17),
        row.setupSeconds.toFixed(2).padStart(8),
        ack.p50.toFixed(1).padStart(15),
        ack.p99.toFixed(1).padStart(6),
        send.p50.toFixed(1).padStart(16),
        send.p99.toFixed(1).padStart(6),
        (send.p50 / directSend.p50).toFixed(2).padStart(15),
        (send.p99 / directSend.p99).toFixed(2).padStart(15),
        String(row.incomplete).padStart(12),
        `${(row.rssPerWatcherBytes / 1024).toFixed(2)} KiB`.padStart(13),
        `${row.etcdWatchers} / ${row.etcdWatchStreams}`.padStart(26),
      ].join(' '),
    );
  }
  console.log('\n(ratios use "after send": the ack can arrive after the first watchers already have the event)');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
