// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, HTTP/JSON): what etcd last said of its auth is kept
// in the data dir. A proxy without a user of its own (--user) that saw auth go
// on, restarted while etcd is down, must not serve its mirror to anonymous
// clients: before, it assumed auth off and served everything it held.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { enableAuth } from '../support/etcd-auth';
import { b64, httpCall } from '../support/http-gateway';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { scrape } from '../support/metrics';
import { until } from '../support/until';

const KEY = '/apisix/routes/1';
const READ = `{"key":"${b64(KEY)}","serializable":true}`;

/** A gauge or counter without labels, as the proxy's /metrics says it now. */
async function metricValue(proxy: TestProxy, name: string): Promise<number> {
  return (await scrape(proxy.url)).find((sample) => sample.name === name)?.value ?? Number.NaN;
}

describe('a restart during an outage remembers that etcd had auth on', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy | undefined;
  let dataDir: string;

  before(async () => {
    etcd = await startEtcd();
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-auth-restart-'));
    assert.equal((await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${b64(KEY)}","value":"${b64('secret-route')}"}`)).status, 200);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses an anonymous read after a restart without --user while etcd is down', async () => {
    proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s'], { dataDir });
    await proxy.mirrored(2);
    const served = await httpCall(proxy.url, '/v3/kv/range', READ);
    assert.equal(served.status, 200, 'auth off: the mirror serves everyone');

    // The proxy's first auth probe sees auth off; only a later one, made because the mirror served
    // reads since, can learn it went on (with --workers, reads are served by the worker processes).
    await until('the first auth probe', async () => (await scrape(proxy?.url ?? '')).some((m) => m.name === 'etcd_cache_proxy_upstream_calls_total' && m.labels.reason === 'auth-status' && m.value >= 1), 20_000, 200);
    await enableAuth(etcd.clientAddress, [], []);
    // Each read the mirror serves makes the next auth probe due; etcd refuses the anonymous probe.
    await until('the proxy to learn that auth is on', async () => {
      await httpCall(proxy?.url ?? '', '/v3/kv/range', READ);
      return (await metricValue(proxy as TestProxy, 'etcd_cache_proxy_upstream_auth_required')) === 1;
    }, 30_000, 500);
    await proxy.stop();
    proxy = undefined;

    etcd.signal('SIGKILL');
    await until('etcd to exit', async () => !etcd.running(), 10_000);
    proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s'], { dataDir });
    assert.equal(await metricValue(proxy, 'etcd_cache_proxy_upstream_auth_required'), 1, 'remembered at once');
    const anonymous = await httpCall(proxy.url, '/v3/kv/range', READ);
    assert.notEqual(anonymous.status, 200, `served to anonymous: ${anonymous.text}`);
    assert.doesNotMatch(anonymous.text, new RegExp(b64('secret-route')));
    const ready = await fetch(`${proxy.url}/readyz`);
    assert.equal(ready.status, 503, 'not ready: it can serve nobody until etcd answers');
  });
});
