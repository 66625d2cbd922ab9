// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, curl, differential): etcd serves its JSON gateway
// over HTTP/2 too, on the same port as gRPC: a request goes to gRPC only when
// its content type says application/grpc. curl picks HTTP/2 by ALPN over TLS
// (compared with etcd over HTTP/2). Over plain text with
// --http2-prior-knowledge etcd 3.4 itself fails the stream (PROTOCOL_ERROR:
// its plain port gives non-gRPC HTTP/2 to an HTTP/1 server); the proxy
// answers there too, compared with what etcd answers over HTTP/1.1.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createTestCa, type TestCa } from '../support/certs';
import { startTlsPair } from '../support/tls-pair';
import { etcdAndProxy } from '../support/fixture';
import type { EtcdServer } from '../support/etcd';
import type { TestProxy } from '../support/proxy';

const run = promisify(execFile);
const b64 = (s: string): string => Buffer.from(s).toString('base64');

interface CurlAnswer {
  readonly status: number;
  readonly httpVersion: string;
  readonly body: string;
}

/** One request with curl over HTTP/2; `extra` picks TLS or prior knowledge. */
async function curl(url: string, extra: readonly string[], body?: string, maxSeconds = 10): Promise<CurlAnswer> {
  const args = ['-sS', '--max-time', String(maxSeconds), '-o', '-', '-w', '\n%{http_code} %{http_version}', ...extra, ...(body === undefined ? [] : ['-X', 'POST', '-d', body]), url];
  let stdout: string;
  try {
    ({ stdout } = await run('curl', args));
  } catch (error) {
    // curl exits 28 when --max-time ends a stream that is still open (a watch): what came is kept.
    const failed = error as { code?: number; stdout?: string };
    if (failed.code !== 28 || failed.stdout === undefined) throw error;
    stdout = failed.stdout;
  }
  const cut = stdout.lastIndexOf('\n');
  const [status, httpVersion] = stdout.slice(cut + 1).split(' ');
  return { status: Number(status), httpVersion: httpVersion ?? '', body: stdout.slice(0, cut) };
}

/** What a Range answer says beyond its header (the proxy names its own member in some header fields). */
function rangeContent(body: string): unknown {
  const parsed = JSON.parse(body) as { header?: { revision?: string }; kvs?: unknown; count?: string };
  return { revision: parsed.header?.revision, kvs: parsed.kvs, count: parsed.count };
}

/** The same requests to etcd and to the proxy, over HTTP/2, compared. */
function compareOverHttp2(target: () => { etcd: string; proxy: string; curlArgs: readonly string[]; etcdArgs: readonly string[] }): void {
  it('answers a JSON Range as etcd does, over HTTP/2', async () => {
    const { etcd, proxy, curlArgs, etcdArgs } = target();
    const put = await curl(`${proxy}/v3/kv/put`, curlArgs, JSON.stringify({ key: b64('h2/k'), value: b64('v') }));
    assert.equal(put.status, 200, put.body);
    assert.equal(put.httpVersion, '2');
    const revision = (JSON.parse(put.body) as { header: { revision: string } }).header.revision;
    const request = JSON.stringify({ key: b64('h2/k'), serializable: true });
    const fromEtcd = await curl(`${etcd}/v3/kv/range`, etcdArgs, request);
    let fromProxy = await curl(`${proxy}/v3/kv/range`, curlArgs, request);
    // The proxy's mirror may be a moment behind a write made on etcd directly.
    for (let tries = 0; tries < 50 && fromProxy.status === 200 && (JSON.parse(fromProxy.body) as { header: { revision: string } }).header.revision !== revision; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      fromProxy = await curl(`${proxy}/v3/kv/range`, curlArgs, request);
    }
    assert.deepEqual({ status: fromProxy.status, httpVersion: fromProxy.httpVersion }, { status: fromEtcd.status, httpVersion: '2' }, fromProxy.body);
    assert.equal(fromEtcd.status, 200, fromEtcd.body);
    assert.deepEqual(rangeContent(fromProxy.body), rangeContent(fromEtcd.body));
  });

  it('answers errors, other paths and a JSON watch as etcd does, over HTTP/2', async () => {
    const { etcd, proxy, curlArgs, etcdArgs } = target();
    for (const [path, body] of [
      ['/v3/kv/range', '{"key": 12'],
      ['/v3/kv/nothing', '{}'],
      ['/health', undefined],
    ] as const) {
      const [fromEtcd, fromProxy] = [await curl(`${etcd}${path}`, etcdArgs, body), await curl(`${proxy}${path}`, curlArgs, body)];
      assert.deepEqual({ status: fromProxy.status, httpVersion: fromProxy.httpVersion }, { status: fromEtcd.status, httpVersion: '2' }, `${path}: ${fromProxy.body}`);
      assert.equal(fromEtcd.httpVersion, etcdArgs.includes('--http1.1') ? '1.1' : '2');
      if (path !== '/health') assert.equal(fromProxy.body, fromEtcd.body, path);
    }
    const watch = JSON.stringify({ create_request: { key: b64('h2/k') } });
    const [fromEtcd, fromProxy] = await Promise.all([curl(`${etcd}/v3/watch`, etcdArgs, watch, 2), curl(`${proxy}/v3/watch`, curlArgs, watch, 2)]);
    const created = (answer: CurlAnswer): unknown => {
      const first = JSON.parse(answer.body.split('\n')[0] ?? '{}') as { result?: { created?: boolean } };
      return { status: answer.status, created: first.result?.created };
    };
    assert.deepEqual(created(fromProxy), created(fromEtcd));
    assert.equal(fromProxy.httpVersion, '2');
    assert.deepEqual(created(fromProxy), { status: 200, created: true });
  });
}

describe('the JSON gateway over HTTP/2 with prior knowledge (plain text)', () => {
  const both = etcdAndProxy();
  compareOverHttp2(() => ({ etcd: both.etcd.clientUrl, proxy: both.proxy.url, curlArgs: ['--http2-prior-knowledge'], etcdArgs: ['--http1.1'] }));
});

describe('the JSON gateway over HTTP/2 chosen by ALPN (TLS)', () => {
  let ca: TestCa;
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let curlArgs: string[] = [];

  before(async () => {
    ca = createTestCa('h2');
    const pair = await startTlsPair(ca);
    ({ etcd, proxy } = pair);
    const appLeaf = pair.appLeaf;
    curlArgs = ['--http2', '--cacert', ca.caCert, '--cert', appLeaf.cert, '--key', appLeaf.key];
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    if (ca !== undefined) rmSync(ca.dir, { recursive: true, force: true });
  });

  compareOverHttp2(() => ({ etcd: etcd.clientUrl, proxy: `https://${proxy.address}`, curlArgs, etcdArgs: curlArgs }));
});
