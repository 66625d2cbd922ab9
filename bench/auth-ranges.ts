// Benchmark: how long a change takes to reach a gateway's watch through the
// proxy when etcd has auth on and the mirror's user reads two prefixes only
// (/apisix/ and /other/, with keys it may not read between them), so the
// mirror watches each prefix on its own and merges them into revision order.
// Side by side in one run, against one etcd (simple tokens):
//
// * etcd: the gateway's watch straight on etcd (the floor);
// * proxy, root user: --user root, one watch over the whole keyspace;
// * proxy, two ranges: --user with read on /apisix/ and /other/ only.
//
// For each of --writes puts to /apisix/routes/1 (made on etcd directly, one at
// a time), the time from the put's answer until each gateway's watch has it:
// p50, p99 and max per target. On etcd before 3.4.31 / 3.5.13 the merge
// believes a progress answer only after a quiet spell (README, "With etcd's
// authentication on"); that wait shows here.
//
//   node --import tsx bench/auth-ranges.ts [--writes 50]
import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd } from '../test/support/etcd';
import { enableAuth, ROOT_PASSWORD } from '../test/support/etcd-auth';
import { b64, httpCall } from '../test/support/http-gateway';
import { startProxyProcess, type ProxyProcess } from '../test/support/proxy';
import { WatchClient, eventsOf } from '../test/support/watch-client';

const { values } = parseArgs({ options: { writes: { type: 'string', default: '50' } } });
const WRITES = Number(values.writes);
const KEY = '/apisix/routes/1';

async function login(url: string, name: string, password: string): Promise<string> {
  const answer = await httpCall(url, '/v3/auth/authenticate', JSON.stringify({ name, password }));
  assert.equal(answer.status, 200, answer.text);
  return (answer.json as { token: string }).token;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const proxies: ProxyProcess[] = [];
  const watches: WatchClient[] = [];
  try {
    for (const key of [KEY, '/b/between', '/other/x']) assert.equal((await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(key)}","value":"${b64('0')}"}`)).status, 200);
    await enableAuth(
      etcd.clientAddress,
      [{ name: 'two-prefixes', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READ' }, { key: '/other/', rangeEnd: '/other0', type: 'READ' }] }],
      [{ name: 'mirror', password: 'mirror-pw', roles: ['two-prefixes'] }],
    );
    const version = ((await (await fetch(`${etcd.clientUrl}/version`)).json()) as { etcdserver: string }).etcdserver;
    const rootProxy = await startProxyProcess([etcd.clientUrl], ['--user', `root:${ROOT_PASSWORD}`]);
    const rangesProxy = await startProxyProcess([etcd.clientUrl], ['--user', 'mirror:mirror-pw']);
    proxies.push(rootProxy, rangesProxy);
    const targets = [
      { name: 'etcd (floor)', address: etcd.clientAddress, url: etcd.clientUrl },
      { name: 'proxy, --user root (one watch)', address: rootProxy.address, url: `http://${rootProxy.address}` },
      { name: 'proxy, --user of two prefixes', address: rangesProxy.address, url: `http://${rangesProxy.address}` },
    ];
    for (const target of targets) {
      // A login through each proxy, so it knows the gateway's token.
      const token = await login(target.url, 'root', ROOT_PASSWORD);
      const watch = new WatchClient(target.address, { metadata: { token } });
      const [created] = await watch.createAll([{ key: Buffer.from('/apisix/'), range_end: Buffer.from('/apisix0') }], 20_000);
      assert.equal(created?.canceled ?? false, false);
      watches.push(watch);
    }
    const writerToken = await login(etcd.clientUrl, 'root', ROOT_PASSWORD);
    const delays: number[][] = targets.map(() => []);
    for (let i = 1; i <= WRITES; i += 1) {
      const value = `v${i}`;
      const put = await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(KEY)}","value":"${b64(value)}"}`, { headers: { Authorization: writerToken } });
      assert.equal(put.status, 200, put.text);
      const answeredAt = performance.now();
      await Promise.all(
        watches.map(async (watch, index) => {
          const response = await watch.next(value, (r) => eventsOf([r]).some((e) => e.kv?.value?.toString() === value), 0, 10_000);
          void response;
          delays[index]?.push(performance.now() - answeredAt);
        }),
      );
      // A gateway's configuration changes now and then, not back to back.
      await sleep(50);
    }
    console.log(`etcd ${version}, ${WRITES} writes, ms from the put's answer until the watch has it`);
    console.log('target                               p50     p99     max');
    targets.forEach((target, index) => {
      const sorted = [...(delays[index] ?? [])].sort((a, b) => a - b);
      const f = (n: number): string => n.toFixed(1).padStart(7);
      console.log(`${target.name.padEnd(34)} ${f(percentile(sorted, 50))} ${f(percentile(sorted, 99))} ${f(sorted[sorted.length - 1] ?? Number.NaN)}`);
    });
  } finally {
    for (const watch of watches) watch.close();
    for (const proxy of proxies) await proxy.stop();
    await etcd.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
