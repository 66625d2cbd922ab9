// Benchmark: what a fleet of proxies costs etcd. N proxies (each its own
// process and data dir, as on N gateway machines) in front of a 3-member
// etcd on loopback. Read from etcd's own /metrics, summed over its members:
//
// * idle: RPCs and bytes per second per proxy over a measured window, by
//   method (grpc_server_started_total, etcd_network_client_grpc_*_bytes_total);
// * an outage: every member killed and restarted; the time until every proxy
//   serves a write made after the restart, the RPCs and bytes that took, and
//   how many proxies listed the keyspace again;
// * a write: the p99 time until all N proxies serve it.
//
// Extrapolated linearly to 10 000 proxies in the report.
//
//   node --import tsx bench/fleet.ts [--proxies 20] [--window-s 60] [--keys 1000]
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startEtcdCluster, type EtcdCluster } from '../test/support/etcd-cluster';
import { startProxyProcess, type ProxyProcess } from '../test/support/proxy';
import { call, rawClients } from '../test/support/raw-client';

const { values } = parseArgs({
  options: {
    proxies: { type: 'string', default: '20' },
    'window-s': { type: 'string', default: '60' },
    keys: { type: 'string', default: '1000' },
  },
});
const PROXIES = Number(values.proxies);
const WINDOW_S = Number(values['window-s']);
const KEYS = Number(values.keys);
const FLEET = 10_000;

interface EtcdCounters {
  /** RPCs started, by "Service/Method". */
  readonly rpcs: Map<string, number>;
  readonly sentBytes: number;
  readonly receivedBytes: number;
}

async function countersOf(cluster: EtcdCluster): Promise<EtcdCounters> {
  const rpcs = new Map<string, number>();
  let sentBytes = 0;
  let receivedBytes = 0;
  for (const member of cluster.members) {
    const text = await (await fetch(`${member.clientUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      const started = /^grpc_server_started_total\{grpc_method="(\w+)",grpc_service="[\w.]+\.(\w+)",grpc_type="\w+"\} (\S+)$/.exec(line);
      if (started !== null) rpcs.set(`${started[2]}/${started[1]}`, (rpcs.get(`${started[2]}/${started[1]}`) ?? 0) + Number(started[3]));
      if (line.startsWith('etcd_network_client_grpc_sent_bytes_total ')) sentBytes += Number(line.split(' ')[1]);
      if (line.startsWith('etcd_network_client_grpc_received_bytes_total ')) receivedBytes += Number(line.split(' ')[1]);
    }
  }
  return { rpcs, sentBytes, receivedBytes };
}

function difference(after: EtcdCounters, before: EtcdCounters): EtcdCounters {
  const rpcs = new Map<string, number>();
  for (const [method, count] of after.rpcs) {
    const delta = count - (before.rpcs.get(method) ?? 0);
    if (delta > 0) rpcs.set(method, delta);
  }
  return { rpcs, sentBytes: after.sentBytes - before.sentBytes, receivedBytes: after.receivedBytes - before.receivedBytes };
}

const total = (counters: EtcdCounters): number => [...counters.rpcs.values()].reduce((sum, n) => sum + n, 0);

/** Whether the proxy's mirror answers `key` with `value` (a serializable read: the mirror, no barrier). */
async function serves(proxy: ProxyProcess, key: string, value: string): Promise<boolean> {
  const clients = rawClients(proxy.address);
  try {
    const got = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', { key: Buffer.from(key), serializable: true }, { deadlineMs: 2_000 });
    return got.response?.kvs?.[0]?.value.toString() === value;
  } finally {
    clients.close();
  }
}

/** Milliseconds until every proxy serves the value, each measured on its own. */
async function untilAllServe(proxies: readonly ProxyProcess[], key: string, value: string, since: number, timeoutMs: number): Promise<number[]> {
  return Promise.all(
    proxies.map(async (proxy) => {
      while (Date.now() - since < timeoutMs) {
        if (await serves(proxy, key, value)) return Date.now() - since;
        await sleep(20);
      }
      return Number.POSITIVE_INFINITY;
    }),
  );
}

async function metricOf(proxy: ProxyProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://${proxy.address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? 0);
}

function perSecondRows(counters: EtcdCounters, seconds: number, proxies: number): string[] {
  return [...counters.rpcs]
    .sort((a, b) => b[1] - a[1])
    .map(([method, count]) => `  ${method.padEnd(28)} ${(count / seconds / proxies).toFixed(3).padStart(8)} /s per proxy   ${((count / seconds / proxies) * FLEET).toFixed(0).padStart(8)} /s for ${FLEET}`);
}

const percentile = (values: readonly number[], p: number): number => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)] ?? NaN;

async function main(): Promise<void> {
  const cluster = await startEtcdCluster(3);
  const first = cluster.members[0];
  if (first === undefined) throw new Error('no member');
  const seed = rawClients(first.clientAddress);
  const value = Buffer.alloc(900, 'x');
  for (let i = 0; i < KEYS; i += 1) await call(seed.kv, 'Put', { key: Buffer.from(`/apisix/routes/${String(i).padStart(6, '0')}`), value });
  const proxies: ProxyProcess[] = [];
  try {
    for (let i = 0; i < PROXIES; i += 1) proxies.push(await startProxyProcess([], ['--initial-cluster', cluster.initialCluster(), '--log-level', 'warn']));
    await untilAllServe(proxies, `/apisix/routes/${String(KEYS - 1).padStart(6, '0')}`, value.toString(), Date.now(), 120_000);
    await sleep(5_000); // past start-up: members discovered, first checks done

    const idleBefore = await countersOf(cluster);
    await sleep(WINDOW_S * 1000);
    const idle = difference(await countersOf(cluster), idleBefore);
    const rpcPerProxy = total(idle) / WINDOW_S / PROXIES;
    const bytesPerProxy = (idle.sentBytes + idle.receivedBytes) / WINDOW_S / PROXIES;

    const writeKey = '/apisix/routes/fleet-write';
    const writeTimes: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const sent = Date.now();
      await call(seed.kv, 'Put', { key: Buffer.from(writeKey), value: Buffer.from(`w${i}`) });
      writeTimes.push(Math.max(...(await untilAllServe(proxies, writeKey, `w${i}`, sent, 30_000))));
    }

    const relistsBefore = (await Promise.all(proxies.map((p) => metricOf(p, 'etcd_cache_proxy_mirror_relists_total')))).reduce((a, b) => a + b, 0);
    for (const member of cluster.members) member.signal('SIGKILL');
    await sleep(5_000); // every proxy notices the outage
    await Promise.all(cluster.members.map((member) => member.restart()));
    const restarted = Date.now();
    const afterRestart = await countersOf(cluster);
    const after = rawClients(first.clientAddress);
    await call(after.kv, 'Put', { key: Buffer.from(writeKey), value: Buffer.from('after-outage') }, { deadlineMs: 10_000 });
    after.close();
    const recovery = await untilAllServe(proxies, writeKey, 'after-outage', restarted, 120_000);
    const recovered = difference(await countersOf(cluster), afterRestart);
    const relists = (await Promise.all(proxies.map((p) => metricOf(p, 'etcd_cache_proxy_mirror_relists_total')))).reduce((a, b) => a + b, 0) - relistsBefore;

    console.log(`${PROXIES} proxies, 3-member etcd 3.4 on loopback, ${KEYS} keys of 900 B mirrored by each\n`);
    console.log(`idle, ${WINDOW_S} s: ${rpcPerProxy.toFixed(3)} RPC/s and ${(bytesPerProxy / 1024).toFixed(2)} KiB/s per proxy; for ${FLEET} proxies ${(rpcPerProxy * FLEET).toFixed(0)} RPC/s and ${((bytesPerProxy * FLEET) / 1024 / 1024).toFixed(1)} MiB/s`);
    for (const row of perSecondRows(idle, WINDOW_S, PROXIES)) console.log(row);
    console.log(`\na write until all ${PROXIES} proxies serve it: p50 ${percentile(writeTimes, 50)} ms, max ${Math.max(...writeTimes)} ms (5 writes)`);
    console.log(
      `\nafter every member was killed and restarted: all ${PROXIES} serve a new write ${Math.max(...recovery)} ms after the restart (p50 ${percentile(recovery, 50)} ms); ${total(recovered)} RPCs and ${((recovered.sentBytes + recovered.receivedBytes) / 1024).toFixed(0)} KiB meanwhile (${(total(recovered) / PROXIES).toFixed(1)} RPCs per proxy; ${((total(recovered) / PROXIES) * FLEET).toFixed(0)} for ${FLEET}); ${relists} proxies listed again`,
    );
  } finally {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    seed.close();
    await cluster.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
