// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, plain HTTP as lua-resty-etcd speaks it): what
// Apache APISIX does against etcd's HTTP/JSON gateway, at start and in
// steady state, pointed at the proxy instead: GET /version, the marker PUT
// under each configuration directory (its `init_etcd` step), a prefix range
// of /apisix, then a watch from revision+1 that receives every change. etcd
// is then SIGKILLed: the watch stays open, reads answer from the mirror with
// the stale header, writes get a fast 501 with etcd's JSON error body, and
// APISIX can start again (also after a proxy restart). When etcd returns,
// the changes made meanwhile arrive on the watch, in order, once.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { b64, httpCall, HttpStream, type HttpAnswer } from '../support/http-gateway';
import { untilValue as until } from '../support/until';

const UPSTREAM_TIMEOUT = ['--upstream-timeout', '1s'];
/** Some of the directories APISIX creates under its prefix at start (cli/etcd.lua). */
const APISIX_DIRS = ['/routes', '/upstreams', '/services', '/plugins', '/consumers', '/ssls', '/global_rules', '/plugin_metadata'];
const PREFIX = '/apisix';
const WRITES_REJECTED = 'etcd-cache-proxy: upstream cluster unreachable, writes rejected';

interface RangeAnswer {
  header: { revision: string };
  kvs?: { key: string; value: string; mod_revision: string }[];
  count?: string;
}
interface WatchAnswer {
  header: { revision: string };
  created?: boolean;
  events?: { type?: string; kv: { key: string; value?: string; mod_revision: string } }[];
}

const decode = (base64: string | undefined): string => Buffer.from(base64 ?? '', 'base64').toString();

/** APISIX's marker PUT, body spelled as cli/etcd.lua spells it. */
const markerPut = (url: string, dir: string): Promise<HttpAnswer> => httpCall(url, '/v3/kv/put', `{"value":"${b64('init_dir')}", "key":"${b64(`${PREFIX}${dir}/`)}"}`);
const prefixRange = (url: string): Promise<HttpAnswer> => httpCall(url, '/v3/kv/range', `{"key":"${b64(PREFIX)}","range_end":"${b64(`${PREFIX}0`)}"}`);
const putJson = (url: string, key: string, value: string): Promise<HttpAnswer> => httpCall(url, '/v3/kv/put', `{"key":"${b64(key)}","value":"${b64(value)}"}`);
/** The watch lua-resty-etcd opens per worker: the whole prefix from the revision after its last read. */
const openWatch = (url: string, fromRevision: number): HttpStream =>
  new HttpStream(url, '/v3/watch', { body: JSON.stringify({ create_request: { key: b64(PREFIX), range_end: b64(`${PREFIX}0`), start_revision: String(fromRevision) } }) });

/** Every event the watch has received, as key=value@revision (value empty for a delete). */
function events(stream: HttpStream): string[] {
  return stream.results<WatchAnswer>().flatMap((r) => (r.events ?? []).map((e) => `${decode(e.kv.key)}=${e.type === 'DELETE' ? '' : decode(e.kv.value)}@${e.kv.mod_revision}`));
}

/** Waits until the proxy has declared the upstream lost: a write gets the 501 refusal. */
function untilWritesRefused(url: string): Promise<HttpAnswer> {
  return until('the proxy to refuse writes', async () => {
    const answer = await putJson(url, `${PREFIX}/routes/9`, '{"uri":"/z"}');
    return answer.status === 501 ? answer : undefined;
  });
}

/** APISIX's start: /version, the markers, the prefix range, the watch. Returns the range and the watch. */
async function apisixStarts(url: string): Promise<{ range: RangeAnswer; rangeAnswer: HttpAnswer; watch: HttpStream }> {
  const version = await httpCall(url, '/version', null);
  assert.equal(version.status, 200, version.text);
  const { etcdcluster } = version.json as { etcdcluster: string };
  const [major, minor] = etcdcluster.split('.').map(Number);
  assert.ok((major ?? 0) > 3 || ((major ?? 0) === 3 && (minor ?? 0) >= 4), `etcdcluster ${etcdcluster} >= 3.4.0, as APISIX requires`);
  for (const dir of APISIX_DIRS) {
    const marker = await markerPut(url, dir);
    assert.equal(marker.status, 200, `marker PUT ${dir}: ${marker.text}`);
  }
  const rangeAnswer = await prefixRange(url);
  assert.equal(rangeAnswer.status, 200, rangeAnswer.text);
  const range = rangeAnswer.json as RangeAnswer;
  assert.match(range.header.revision, /^\d+$/, 'header.revision is always there, as a string');
  const watch = openWatch(url, Number(range.header.revision) + 1);
  await watch.waitUntil('the created answer', (o) => (o.result as WatchAnswer | undefined)?.created === true);
  return { range, rangeAnswer, watch };
}

describe('the APISIX request sequence through the proxy, with etcd killed halfway', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let dataDir: string;
  const streams: HttpStream[] = [];

  before(async () => {
    etcd = await startEtcd();
    dataDir = mkdtempSync(join(tmpdir(), 'ecp-apisix-'));
    proxy = await startTestProxy([etcd.clientUrl], UPSTREAM_TIMEOUT, { dataDir });
    await proxy.mirrored();
  });
  after(async () => {
    streams.forEach((stream) => stream.close());
    await proxy?.stop();
    await etcd?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  let firstWatch: HttpStream;
  let lastRevision = 0;

  it('starts as APISIX does and follows configuration changes made on etcd', async () => {
    const admin = await putJson(etcd.clientUrl, `${PREFIX}/routes/1`, '{"uri":"/a"}');
    assert.equal(admin.status, 200);
    const started = await apisixStarts(proxy.url);
    firstWatch = started.watch;
    streams.push(firstWatch);
    const keys = (started.range.kvs ?? []).map((kv) => decode(kv.key));
    assert.deepEqual(keys, [...APISIX_DIRS.map((dir) => `${PREFIX}${dir}/`), `${PREFIX}/routes/1`].sort());
    assert.equal(started.range.count, String(keys.length));
    assert.equal(started.rangeAnswer.headers['x-etcd-cache-proxy-stale'], undefined, 'fresh reads are not marked stale');

    // The control plane (APISIX's Admin API) writes to etcd; the data plane hears it through the proxy.
    await putJson(etcd.clientUrl, `${PREFIX}/routes/2`, '{"uri":"/b"}');
    await putJson(etcd.clientUrl, `${PREFIX}/routes/1`, '{"uri":"/a2"}');
    await httpCall(etcd.clientUrl, '/v3/kv/deleterange', `{"key":"${b64(`${PREFIX}/routes/2`)}"}`);
    await until('three events on the watch', async () => (events(firstWatch).length >= 3 ? true : undefined));
    const base = Number(started.range.header.revision);
    assert.deepEqual(events(firstWatch), [`${PREFIX}/routes/2={"uri":"/b"}@${base + 1}`, `${PREFIX}/routes/1={"uri":"/a2"}@${base + 2}`, `${PREFIX}/routes/2=@${base + 3}`]);
    lastRevision = base + 3;
  });

  it('keeps the watch open, reads stale and refuses writes with a fast 501 once etcd is killed', async () => {
    etcd.signal('SIGKILL');
    const refusal = await untilWritesRefused(proxy.url);
    assert.equal(refusal.headers['content-type'], 'application/json');
    assert.deepEqual(refusal.json, { error: WRITES_REJECTED, message: WRITES_REJECTED, code: 14 });
    const timed = await putJson(proxy.url, `${PREFIX}/routes/9`, '{"uri":"/z"}');
    assert.equal(timed.status, 501);
    assert.ok(timed.elapsedMs < 500, `write refused after ${timed.elapsedMs} ms`);
    const lease = await httpCall(proxy.url, '/v3/lease/grant', '{"TTL":10}');
    assert.equal(lease.status, 501, lease.text);

    const read = await prefixRange(proxy.url);
    assert.equal(read.status, 200, read.text);
    assert.equal(read.headers['x-etcd-cache-proxy-stale'], 'true');
    assert.equal((read.json as RangeAnswer).header.revision, String(lastRevision));
    assert.ok((read.json as RangeAnswer).kvs?.some((kv) => decode(kv.key) === `${PREFIX}/routes/1` && decode(kv.value) === '{"uri":"/a2"}'));

    assert.equal(firstWatch.ended, false, 'the watch stream stays open through the outage');
    assert.deepEqual(firstWatch.objects.filter((o) => 'error' in o), []);
  });

  it('lets APISIX start again during the outage: /version, markers from the mirror, range, watch', async () => {
    const started = await apisixStarts(proxy.url);
    streams.push(started.watch);
    assert.equal(started.rangeAnswer.headers['x-etcd-cache-proxy-stale'], 'true');
    // A marker with another value would change etcd's data: refused like any write.
    const changed = await httpCall(proxy.url, '/v3/kv/put', `{"value":"${b64('other')}", "key":"${b64(`${PREFIX}/routes/`)}"}`);
    assert.equal(changed.status, 501);
  });

  it('lets APISIX start against a proxy restarted during the outage', async () => {
    const before = firstWatch.objects.length;
    await proxy.stop();
    // A stop ends open watches with UNAVAILABLE, so gateways reconnect elsewhere (or to the proxy once back).
    await firstWatch.waitForEnd();
    const closing = firstWatch.objects.slice(before).find((o) => 'error' in o) as { error: { grpc_code: number; http_code: number; message: string } } | undefined;
    assert.deepEqual(closing?.error, { grpc_code: 14, http_code: 503, message: 'etcd-cache-proxy: shutting down', http_status: 'Service Unavailable' });

    proxy = await startTestProxy([etcd.clientUrl], UPSTREAM_TIMEOUT, { dataDir });
    // Reads answer at once; a write is known to change nothing (and acknowledged from the mirror)
    // only once the proxy has declared the upstream lost, --upstream-timeout after its start.
    await untilWritesRefused(proxy.url);
    const started = await apisixStarts(proxy.url);
    streams.push(started.watch);
    firstWatch = started.watch;
    assert.equal((started.range.kvs ?? []).length, APISIX_DIRS.length + 1);
    assert.equal(started.range.header.revision, String(lastRevision));
  });

  it('delivers the changes made when etcd returns, in order, once, on the watch opened during the outage', async () => {
    await etcd.restart();
    // Written straight to etcd as soon as it is back: the proxy has not reconnected yet, or just has.
    await putJson(etcd.clientUrl, `${PREFIX}/routes/3`, '{"uri":"/c"}');
    await putJson(etcd.clientUrl, `${PREFIX}/upstreams/1`, '{"nodes":{}}');
    await until('the changes on the watch', async () => (events(firstWatch).length >= 2 ? true : undefined), 20_000);
    const write = await until('writes to be accepted again', async () => {
      const answer = await putJson(proxy.url, `${PREFIX}/routes/4`, '{"uri":"/d"}');
      return answer.status === 200 ? answer : undefined;
    });
    // The next change comes on the same watch after the first two: anything sent twice would have come before it.
    await until('the write through the proxy on the watch', async () => (events(firstWatch).length >= 3 ? true : undefined), 20_000);
    assert.deepEqual(events(firstWatch), [
      `${PREFIX}/routes/3={"uri":"/c"}@${lastRevision + 1}`,
      `${PREFIX}/upstreams/1={"nodes":{}}@${lastRevision + 2}`,
      `${PREFIX}/routes/4={"uri":"/d"}@${lastRevision + 3}`,
    ]);
    assert.equal(write.headers['x-etcd-cache-proxy-stale'], undefined);
    const read = await prefixRange(proxy.url);
    assert.equal(read.headers['x-etcd-cache-proxy-stale'], undefined);
    assert.equal((read.json as RangeAnswer).header.revision, String(lastRevision + 3));
  });
});

describe('Authorization through the proxy, as etcd takes it from its gateway', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;

  before(async () => {
    etcd = await startEtcd();
    for (const [path, body] of [
      ['/v3/auth/user/add', '{"name":"root","password":"rootpw"}'],
      ['/v3/auth/user/grant', '{"user":"root","role":"root"}'],
      ['/v3/kv/put', `{"key":"${b64('/apisix/routes/1')}","value":"${b64('r1')}"}`],
      ['/v3/auth/enable', '{}'],
    ] as const) {
      const answer = await httpCall(etcd.clientUrl, path, body);
      assert.equal(answer.status, 200, `${path}: ${answer.text}`);
    }
    proxy = await startTestProxy([etcd.clientUrl]);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  it('forwards /v3/auth/authenticate and passes the token of the Authorization header', async () => {
    const login = await httpCall(proxy.url, '/v3/auth/authenticate', '{"name":"root","password":"rootpw"}');
    assert.equal(login.status, 200, login.text);
    const token = (login.json as { token: string }).token;
    assert.ok(token.length > 0);
    const range = `{"key":"${b64('/apisix/routes/1')}"}`;
    const withToken = await httpCall(proxy.url, '/v3/kv/range', range, { headers: { Authorization: token } });
    assert.equal(withToken.status, 200, withToken.text);
    assert.equal(decode((withToken.json as RangeAnswer).kvs?.[0]?.value), 'r1');
    const [fromProxy, fromEtcd] = await Promise.all([httpCall(proxy.url, '/v3/kv/range', range), httpCall(etcd.clientUrl, '/v3/kv/range', range)]);
    assert.deepEqual({ status: fromProxy.status, body: fromProxy.json }, { status: fromEtcd.status, body: fromEtcd.json }, 'no token: the answer etcd gives');
    const wrong = await httpCall(proxy.url, '/v3/auth/authenticate', '{"name":"root","password":"nope"}');
    const wrongDirect = await httpCall(etcd.clientUrl, '/v3/auth/authenticate', '{"name":"root","password":"nope"}');
    assert.deepEqual({ status: wrong.status, body: wrong.json }, { status: wrongDirect.status, body: wrongDirect.json });
  });
});
