// Integration (real etcd, the real CLI in its own process): flags, config
// sources, the shared port, metrics, and a graceful stop.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { freePort, startEtcd, type EtcdServer } from '../support/etcd';
import { etcdctl } from '../support/etcdctl';
import { metric } from '../support/metrics';
import { runCliToExit, startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';

const runToExit = runCliToExit;

describe('etcd-cache-proxy command line', () => {
  it('prints its version', async () => {
    const result = await runToExit(['version']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^etcd-cache-proxy \d+\.\d+\.\d+\n/);
  });

  it('refuses an unknown flag with a clear message and a non-zero exit', async () => {
    const result = await runToExit(['start', '--endpoint', 'http://127.0.0.1:2379']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown flag --endpoint/);
  });

  it('lists every invalid value at once', async () => {
    const result = await runToExit(['start', '--log-level=loud', '--listen-addr=nowhere']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--log-level=loud: must be one of/);
    assert.match(result.stderr, /--listen-addr=nowhere: expected host:port/);
  });

  it('refuses an unknown command', async () => {
    const result = await runToExit(['serve']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'serve'/);
  });
});

describe('a running proxy process', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  let clients: RawClients;
  let metricsPort: number;
  let configDir: string;

  before(async () => {
    etcd = await startEtcd();
    metricsPort = await freePort();
    configDir = mkdtempSync(join(tmpdir(), 'ecp-config-'));
    const configFile = join(configDir, 'proxy.yaml');
    // endpoints from the file, metrics address from the environment, the rest from flags
    writeFileSync(configFile, `endpoints:\n  - ${etcd.clientUrl}\nlog-level: debug\n`);
    process.env.ETCD_CACHE_PROXY_METRICS_ADDR = `127.0.0.1:${metricsPort}`;
    try {
      proxy = await startProxyProcess([], ['--config-file', configFile, '--log-level', 'info']);
    } finally {
      delete process.env.ETCD_CACHE_PROXY_METRICS_ADDR;
    }
    clients = rawClients(proxy.address);
  });
  after(async () => {
    clients?.close();
    await proxy?.stop();
    await etcd?.stop();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('takes its settings from file, environment and flags', async () => {
    const put = await call(clients.kv, 'Put', { key: Buffer.from('cli'), value: Buffer.from('yes') });
    assert.equal(put.error, null);
    assert.doesNotMatch(proxy.stderr(), /"level":"debug"/, 'the flag should win over the file');
    const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(scraped, /etcd_cache_proxy_grpc_requests_total\{service="KV",method="Put",code="OK",source="upstream"\} 1/);
  });

  it('serves HTTP on the gRPC port: metrics, health and a plain 404', async () => {
    const range = await call(clients.kv, 'Range', { key: Buffer.from('cli') });
    assert.equal(range.error, null);
    const metrics = await fetch(`http://${proxy.address}/metrics`);
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    assert.match(text, /etcd_cache_proxy_grpc_requests_total\{service="KV",method="Range",code="OK",source="mirror"\} 1/);
    assert.match(text, /etcd_cache_proxy_grpc_request_duration_seconds_bucket\{le="[^"]+",service="KV",method="Range"\}/);
    assert.match(text, /process_cpu_seconds_total/);
    const health = await fetch(`http://${proxy.address}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { health: 'true' });
    const missing = await fetch(`http://${proxy.address}/no/such/path`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), '404 page not found\n');
  });

  it('says once, with what to change, when it starts with no copy and no etcd member answers', async (t) => {
    const answers = async (url: string): Promise<boolean> => fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) }).then(() => true, () => false);
    const cases: { args: string[]; endpoints: string[]; hint: RegExp }[] = [
      { args: ['--endpoints', `http://127.0.0.1:${await freePort()}`], endpoints: [], hint: /^check that these endpoints are etcd client URLs/ },
    ];
    if (await answers('http://127.0.0.1:2379')) t.diagnostic('something answers on 127.0.0.1:2379: the case of the default endpoint is not run');
    else cases.push({ args: [], endpoints: ['http://127.0.0.1:2379'], hint: /^--endpoints is its default \(http:\/\/127\.0\.0\.1:2379\), where no etcd answers: set --endpoints .*'npm run demo'/ });
    for (const { args, endpoints, hint } of cases) {
      const lonely = await startProxyProcess([], [...args, '--upstream-timeout', '300ms']);
      try {
        const line = await untilValue(() => `the warning in:\n${lonely.stderr()}`, async () => lonely.stderr().split('\n').find((l) => l.includes('nothing to serve yet')), 10_000);
        const logged = JSON.parse(line) as { level: string; endpoints: string[]; hint: string; msg: string };
        assert.equal(logged.level, 'warn');
        assert.equal(logged.msg, 'nothing to serve yet: no etcd member has answered and the mirror holds no copy');
        assert.deepEqual(logged.endpoints, endpoints.length > 0 ? endpoints : [args[1]]);
        assert.match(logged.hint, hint);
        // Every liveness tick asks whether the upstream is lost, then probes it: a warning said on each would be
        // there by the time five more probes have started.
        const probes = (): Promise<number> => metric(`http://${lonely.address}`, 'etcd_cache_proxy_upstream_calls_total', { reason: 'liveness' });
        const probesAtWarning = await probes();
        await until('five more liveness probes after the warning', async () => (await probes()) >= probesAtWarning + 5, 10_000);
        assert.equal(lonely.stderr().split('\n').filter((l) => l.includes('nothing to serve yet')).length, 1, 'said once');
      } finally {
        await lonely.stop();
      }
    }
  });

  it('reports unhealthy while etcd cannot answer', async () => {
    await etcd.freeze();
    try {
      const health = await fetch(`http://${proxy.address}/health`);
      assert.equal(health.status, 503);
      const body = (await health.json()) as { health: string; reason: string };
      assert.equal(body.health, 'false');
      assert.match(body.reason, /Deadline exceeded|deadline/i);
    } finally {
      etcd.signal('SIGCONT');
    }
  });

  it('streams a snapshot of the upstream through Maintenance.Snapshot', async () => {
    const file = join(configDir, 'snap.db');
    const saved = await etcdctl(proxy.address, ['snapshot', 'save', file]);
    assert.equal(saved.code, 0, saved.stderr);
    const statusOf = await etcdctl(proxy.address, ['snapshot', 'status', file, '-w', 'json']);
    const snapshot = JSON.parse(statusOf.stdout) as { revision: number; totalKey: number };
    const current = await call<{ header: { revision: string } }>(clients.kv, 'Range', { key: Buffer.from('cli') });
    assert.equal(String(snapshot.revision), current.response?.header.revision);
    assert.ok(snapshot.totalKey >= 1);
  });

  it('stops on SIGTERM: open watches end with UNAVAILABLE, the process exits 0', async () => {
    const stream = (clients.watch as unknown as { Watch(): ClientDuplexStream<object, { created?: boolean }> }).Watch();
    const ended = new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    const created = new Promise<void>((resolve) => stream.on('data', (r: { created?: boolean }) => r.created && resolve()));
    stream.write({ create_request: { key: Buffer.from('cli') } });
    await created;
    proxy.child.kill('SIGTERM');
    const error = await ended;
    assert.equal(error.code, status.UNAVAILABLE);
    assert.equal(error.details, 'etcd-cache-proxy: shutting down');
    assert.equal(await proxy.exited, 0);
    assert.match(proxy.stderr(), /"msg":"stopped"/);
  });
});
