// Integration (real etcd, the CLI with --workers 2, raw grpc-js and the JSON
// gateway): several serving processes over one mirror answer as one proxy
// does. Writes through one connection are read and watched through others
// (each connection lands on some worker), a SIGKILLed worker is replaced
// while the other serves, /metrics is the sum with a label where a sum would
// hide a problem, SIGHUP reaches every worker, the outage contract holds in
// every worker, and a SIGKILLed primary takes its workers with it and comes
// back on the same data dir with everything committed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { enableAuth } from '../support/etcd-auth';
import { b64, httpCall } from '../support/http-gateway';
import { scrape, type Sample } from '../support/metrics';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients, type UnaryOutcome } from '../support/raw-client';
import { WatchClient, eventsOf } from '../support/watch-client';
import { servingChildren } from '../support/processes';
import { until } from '../support/until';

const CONNECTIONS = 6;
const UPSTREAM_TIMEOUT = ['--upstream-timeout', '1s'];

interface RangeReply {
  readonly header: { readonly revision: string };
  readonly kvs: readonly { readonly key: Buffer; readonly value: Buffer }[];
}
interface PutReply {
  readonly header: { readonly revision: string };
}

/** The serving processes the primary started, by pid. */
async function childPids(pid: number): Promise<number[]> {
  return Promise.resolve(servingChildren(pid));
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const value = (samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number | undefined =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

/**
 * A Range answered within a few seconds: an attempt may fail at once with
 * UNAVAILABLE (its connection went to a worker as it died), but none may hang.
 */
async function answeredSoon(clients: RawClients, key: string): Promise<UnaryOutcome<RangeReply>> {
  const failures: string[] = [];
  // grpc-js waits about a second (its reconnect backoff) before it connects again after a refused attempt.
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const read = await call<RangeReply>(clients.kv, 'Range', { key: Buffer.from(key) }, { deadlineMs: 3_000 });
    if (read.error === null) return read;
    assert.equal(read.error.code, status.UNAVAILABLE, `a Range left waiting: ${read.error.details}`);
    failures.push(read.error.details);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.fail(`no answer in 20 attempts: ${[...new Set(failures)].join('; ')}`);
}

/** grpc-js shares one connection between clients of one address unless told not to; each of these needs its own. */
const OWN_CONNECTION = { 'grpc.use_local_subchannel_pool': 1 };

function connections(address: string): RawClients[] {
  return Array.from({ length: CONNECTIONS }, () => rawClients(address, undefined, OWN_CONNECTION));
}

describe('--workers 2', () => {
  let etcd: EtcdServer;
  let configDir: string;
  let configFile: string;
  let dataDir: string;
  let proxy: ProxyProcess;
  let clients: RawClients[] = [];

  before(async () => {
    etcd = await startEtcd();
    configDir = mkdtempSync(join(tmpdir(), 'ecp-workers-'));
    dataDir = join(configDir, 'data');
    configFile = join(configDir, 'proxy.yaml');
    writeFileSync(configFile, stringify({ mode: 'readwrite' }));
    proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--config-file', configFile, '--shutdown-grace', '2s', ...UPSTREAM_TIMEOUT], { dataDir });
    clients = connections(proxy.address);
  });
  after(async () => {
    for (const c of clients) c.close();
    await proxy?.stop();
    await etcd?.stop();
    if (configDir !== undefined) rmSync(configDir, { recursive: true, force: true });
  });

  it('runs one mirror process and two serving processes, and says so in /metrics', async () => {
    let children: number[] = [];
    await until(() => `two serving processes, not ${children.join(' ')}:\n${proxy.stderr()}`, async () => (children = await childPids(proxy.child.pid ?? 0)).length === 2, 10_000);
    const samples = await scrape(`http://${proxy.address}`);
    assert.equal(value(samples, 'etcd_cache_proxy_workers_serving'), 2);
    // What one process alone says (memory, CPU, event loop) is labelled with it, not summed.
    const workersWithMemory = samples.filter((s) => s.name === 'process_resident_memory_bytes').map((s) => s.labels.worker).sort();
    assert.deepEqual(workersWithMemory, ['1', '2', 'mirror']);
  });

  it('reads its own writes and watches them through every connection, whichever worker holds it', async () => {
    const watcher = new WatchClient(proxy.address, { ownConnection: true });
    try {
      const [created] = await watcher.createAll([{ key: Buffer.from('w/'), range_end: Buffer.from('w0') }]);
      const watchId = created?.watch_id ?? '0';
      const written: string[] = [];
      for (let i = 0; i < 30; i += 1) {
        const key = `w/${i}`;
        const put = await call<PutReply>(clients[i % CONNECTIONS]!.kv, 'Put', { key: Buffer.from(key), value: Buffer.from(`v${i}`) });
        assert.equal(put.error, null, put.error?.details);
        written.push(key);
        // Serializable, on another connection: the write's revision or later (the proxy waits for its mirror).
        const read = await call<RangeReply>(clients[(i + 1) % CONNECTIONS]!.kv, 'Range', { key: Buffer.from(key), serializable: true });
        assert.equal(read.error, null, read.error?.details);
        assert.ok(Number(read.response?.header.revision) >= Number(put.response?.header.revision), `read at ${read.response?.header.revision} after a write at ${put.response?.header.revision}`);
        assert.equal(read.response?.kvs[0]?.value.toString(), `v${i}`);
      }
      // Writes made on etcd directly reach every worker through the one mirror.
      const direct = rawClients(etcd.clientAddress);
      try {
        const put = await call<PutReply>(direct.kv, 'Put', { key: Buffer.from('w/direct'), value: Buffer.from('d') });
        written.push('w/direct');
        for (const c of clients) {
          await until('the direct write in every worker', async () => {
            const read = await call<RangeReply>(c.kv, 'Range', { key: Buffer.from('w/direct'), serializable: true });
            return Number(read.response?.header.revision) >= Number(put.response?.header.revision) && read.response?.kvs[0]?.value.toString() === 'd';
          }, 5_000, 20);
        }
      } finally {
        direct.close();
      }
      await until('every write in the watch', () => eventsOf(watcher.responses, watchId).length >= written.length, 5_000, 20);
      assert.deepEqual(eventsOf(watcher.responses, watchId).map((e) => e.kv?.key?.toString()), written);
    } finally {
      watcher.close();
    }
  });

  it('answers the JSON gateway from every worker', async () => {
    for (let i = 0; i < 4; i += 1) {
      // A connection of its own each time (no keep-alive agent): each may land on another worker.
      const response = await fetch(`http://${proxy.address}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('w/1').toString('base64') }), keepalive: false, headers: { connection: 'close' } });
      assert.equal(response.status, 200);
      const body = (await response.json()) as { kvs?: { value: string }[] };
      assert.equal(Buffer.from(body.kvs?.[0]?.value ?? '', 'base64').toString(), 'v1');
    }
  });

  it('replaces a SIGKILLed worker while the other serves, and counts it', async () => {
    const [victim] = await childPids(proxy.child.pid ?? 0);
    assert.ok(victim !== undefined);
    // Commits keep coming as the worker dies: telling a dead worker of one must not take the primary down.
    const direct = rawClients(etcd.clientAddress);
    let writing = true;
    const writes = (async () => {
      for (let i = 0; writing; i += 1) await call(direct.kv, 'Put', { key: Buffer.from('w/churn'), value: Buffer.from(String(i)) });
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    process.kill(victim, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 300));
    writing = false;
    await writes;
    direct.close();
    assert.equal(proxy.child.exitCode, null, `the primary exited:\n${proxy.stderr()}`);
    // A connection made the instant the worker died may be closed (never left waiting): the client's next attempt is answered.
    const fresh = rawClients(proxy.address, undefined, OWN_CONNECTION);
    try {
      const read = await answeredSoon(fresh, 'w/2');
      assert.equal(read.response?.kvs[0]?.value.toString(), 'v2');
    } finally {
      fresh.close();
    }
    await until('a worker in the place of the killed one', async () => {
      const pids = await childPids(proxy.child.pid ?? 0);
      return pids.length === 2 && !pids.includes(victim);
    }, 10_000);
    await until('two workers serving again', async () => value(await scrape(`http://${proxy.address}`), 'etcd_cache_proxy_workers_serving') === 2, 10_000);
    const samples = await scrape(`http://${proxy.address}`);
    assert.equal(value(samples, 'etcd_cache_proxy_worker_restarts_total'), 1);
    assert.deepEqual(samples.filter((s) => s.name === 'process_resident_memory_bytes').map((s) => s.labels.worker).sort(), ['1', '2', 'mirror'], 'the new worker takes the old one\'s label');
    // Clients of the killed worker reconnect at once (some to the new worker): every connection answers again.
    for (const c of clients) assert.equal((await answeredSoon(c, 'w/3')).response?.kvs[0]?.value.toString(), 'v3');
  });

  it('sums request counts over the workers', async () => {
    const countRanges = async (): Promise<number> =>
      (await scrape(`http://${proxy.address}`)).filter((s) => s.name === 'etcd_cache_proxy_grpc_requests_total' && s.labels.method === 'Range').reduce((sum, s) => sum + s.value, 0);
    const before = await countRanges();
    for (const c of clients) assert.equal((await call(c.kv, 'Range', { key: Buffer.from('w/4'), serializable: true })).error, null);
    assert.equal((await countRanges()) - before, CONNECTIONS);
  });

  it('reloads every worker on SIGHUP', async () => {
    writeFileSync(configFile, stringify({ mode: 'readonly' }));
    proxy.child.kill('SIGHUP');
    for (const c of clients) {
      await until('the read-only mode in every worker', async () => (await call(c.kv, 'Put', { key: Buffer.from('w/ro'), value: Buffer.from('x') })).error?.code === status.UNIMPLEMENTED, 5_000, 20);
    }
    writeFileSync(configFile, stringify({ mode: 'readwrite' }));
    proxy.child.kill('SIGHUP');
    for (const c of clients) {
      await until('writes again in every worker', async () => (await call(c.kv, 'Put', { key: Buffer.from('w/rw'), value: Buffer.from('x') })).error === null, 5_000, 20);
    }
  });

  it('serves stale reads and refuses writes at once in every worker while etcd is frozen', async () => {
    await etcd.freeze();
    try {
      for (const c of clients) {
        await until('the upstream declared lost', async () => (await call(c.kv, 'Put', { key: Buffer.from('w/x'), value: Buffer.from('x') }, { deadlineMs: 3_000 })).error?.code === status.UNAVAILABLE, 10_000, 50);
      }
      for (const c of clients) {
        const started = Date.now();
        const put = await call(c.kv, 'Put', { key: Buffer.from('w/x'), value: Buffer.from('x') }, { deadlineMs: 3_000 });
        assert.equal(put.error?.code, status.UNAVAILABLE);
        assert.ok(Date.now() - started < 500, `a write refused after ${Date.now() - started} ms`);
        const read = await call<RangeReply>(c.kv, 'Range', { key: Buffer.from('w/5') }, { deadlineMs: 3_000 });
        assert.equal(read.error, null, read.error?.details);
        assert.equal(read.headers?.get('x-etcd-cache-proxy-stale')[0], 'true');
        assert.equal(read.response?.kvs[0]?.value.toString(), 'v5');
      }
    } finally {
      etcd.signal('SIGCONT');
    }
    for (const c of clients) {
      await until('writes accepted again in every worker', async () => (await call(c.kv, 'Put', { key: Buffer.from('w/back'), value: Buffer.from('b') }, { deadlineMs: 3_000 })).error === null, 15_000, 100);
    }
  });

  it('takes its workers with it when the primary is SIGKILLed, and serves everything committed after a restart while etcd is down', async () => {
    const last = await call<PutReply>(clients[0]!.kv, 'Put', { key: Buffer.from('w/last'), value: Buffer.from('committed') });
    assert.equal(last.error, null);
    await until('the last write in the mirror', async () => (await call<RangeReply>(clients[1]!.kv, 'Range', { key: Buffer.from('w/last'), serializable: true })).response?.kvs.length === 1, 5_000, 20);
    const workers = await childPids(proxy.child.pid ?? 0);
    assert.equal(workers.length, 2);
    proxy.child.kill('SIGKILL');
    await proxy.exited;
    await until('no worker left behind', () => workers.every((pid) => !alive(pid)), 5_000, 20);

    await etcd.stop();
    proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--config-file', configFile, '--shutdown-grace', '2s', ...UPSTREAM_TIMEOUT], { dataDir, port: Number(proxy.address.split(':')[1]) });
    const after = rawClients(proxy.address, undefined, OWN_CONNECTION);
    try {
      const read = await call<RangeReply>(after.kv, 'Range', { key: Buffer.from('w/'), range_end: Buffer.from('w0') }, { deadlineMs: 5_000 });
      assert.equal(read.error, null, read.error?.details);
      assert.equal(read.headers?.get('x-etcd-cache-proxy-stale')[0], 'true');
      const keys = read.response?.kvs.map((kv) => kv.key.toString()) ?? [];
      assert.ok(keys.includes('w/last') && keys.includes('w/direct') && keys.includes('w/29'), keys.join(' '));
    } finally {
      after.close();
    }
    // SIGTERM to every process at once, as systemd stops a service's control group: each drains once,
    // the primary exits 0 and leaves no worker.
    const restartedWorkers = await childPids(proxy.child.pid ?? 0);
    assert.equal(restartedWorkers.length, 2);
    for (const pid of [proxy.child.pid ?? 0, ...restartedWorkers]) process.kill(pid, 'SIGTERM');
    assert.equal(await proxy.exited, 0, proxy.stderr());
    assert.ok(restartedWorkers.every((pid) => !alive(pid)));
    assert.doesNotMatch(proxy.stderr(), /did not stop cleanly/);
  });
});

/** One JSON call on a connection of its own: consecutive calls go to the workers in turn. */
const onNewConnection = (url: string, path: string, body: object, token?: string): ReturnType<typeof httpCall> =>
  httpCall(url, path, JSON.stringify(body), { headers: { connection: 'close', ...(token === undefined ? {} : { Authorization: token }) } });

describe('--workers 2 with etcd\'s auth on', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;

  before(async () => {
    etcd = await startEtcd();
    const seed = rawClients(etcd.clientAddress);
    try {
      assert.equal((await call(seed.kv, 'Put', { key: Buffer.from('/apisix/routes/1'), value: Buffer.from('{}') })).error, null);
    } finally {
      seed.close();
    }
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'apisix-reader', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READ' }] },
        { name: 'mirror-reader', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
      ],
      [
        { name: 'apisix', password: 'apisix-pw', roles: ['apisix-reader'] },
        { name: 'mirror', password: 'mirror-pw', roles: ['mirror-reader'] },
      ],
    );
    proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--user', 'mirror:mirror-pw', '--auth-offline-login', '--shutdown-grace', '2s', ...UPSTREAM_TIMEOUT]);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  it('knows a login in every worker, before and during an outage, and answers offline logins from any', async () => {
    const url = `http://${proxy.address}`;
    const readPrefix = (token: string): ReturnType<typeof httpCall> => onNewConnection(url, '/v3/kv/range', { key: b64('/apisix/'), range_end: b64('/apisix0') }, token);
    await until('the mirror', async () => (value(await scrape(url), 'etcd_cache_proxy_mirror_revision') ?? 0) > 1, 10_000);
    const online = await onNewConnection(url, '/v3/auth/authenticate', { name: 'apisix', password: 'apisix-pw' });
    assert.equal(online.status, 200, online.text);
    const token = (online.json as { token: string }).token;
    for (let i = 0; i < 4; i += 1) assert.equal((await readPrefix(token)).status, 200);
    // Each worker read the user's permissions at once (the one that saw the login, and the other when told of it), wherever the reads went.
    const permissionReads = async (): Promise<number> => value(await scrape(url), 'etcd_cache_proxy_auth_permission_reads_total', { result: 'ok' }) ?? 0;
    await until('both workers to know what the user may read', async () => (await permissionReads()) >= 2, 5_000);

    etcd.signal('SIGKILL');
    await until('the upstream declared lost', async () => value(await scrape(url), 'etcd_cache_proxy_upstream_up') === 0, 10_000);
    for (let i = 0; i < 4; i += 1) {
      const read = await readPrefix(token);
      assert.equal(read.status, 200, `read ${i} with etcd's token during the outage: ${read.text}`);
      assert.deepEqual((read.json as { kvs: { key: string }[] }).kvs.map((kv) => Buffer.from(kv.key, 'base64').toString()), ['/apisix/routes/1']);
    }
    // Offline logins, each on its own connection (so on both workers), and reads with the proxy's tokens on others.
    for (let i = 0; i < 4; i += 1) {
      const offline = await onNewConnection(url, '/v3/auth/authenticate', { name: 'apisix', password: 'apisix-pw' });
      assert.equal(offline.status, 200, `offline login ${i}: ${offline.text}`);
      const proxyToken = (offline.json as { token: string }).token;
      assert.match(proxyToken, /^etcd-cache-proxy\./);
      for (let j = 0; j < 2; j += 1) assert.equal((await readPrefix(proxyToken)).status, 200, `read ${j} with offline token ${i}`);
    }
  });
});
