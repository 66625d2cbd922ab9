// Integration (real etcd with TLS and client-certificate auth, certificates
// made by the test with openssl, etcdctl and grpc-js clients): TLS to the
// upstream and for clients, gRPC and HTTP on the one port, client
// certificates enforced, and certificates reloaded from disk without a
// restart and without dropping open streams.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { credentials, status, type ChannelCredentials } from '@grpc/grpc-js';
import { TLS_RELOAD_POLL_MS } from '../../src/tls/watched-material';
import { createTestCa, type TestCa } from '../support/certs';
import { startTlsPair } from '../support/tls-pair';
import type { EtcdServer } from '../support/etcd';
import { until } from '../support/until';
import { etcdctl } from '../support/etcdctl';
import { startProxyProcess, startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);

function tlsCredentials(ca: string, leaf?: { cert: string; key: string }): ChannelCredentials {
  return credentials.createSsl(readFileSync(ca), leaf === undefined ? null : readFileSync(leaf.key), leaf === undefined ? null : readFileSync(leaf.cert));
}

/** The serial number of the certificate a fresh TLS connection to the proxy is shown. */
function servedSerial(port: number, ca: string, leaf: { cert: string; key: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), ALPNProtocols: ['http/1.1'] }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

/** A GET, or a POST of `post`, over TLS with a client certificate. */
function httpsText(url: string, ca: string, leaf: { cert: string; key: string }, post?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = { ca: readFileSync(ca), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), method: post === undefined ? 'GET' : 'POST' };
    const request = httpsRequest(url, options, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (c: string) => (body += c));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
    request.end(post);
  });
}

/** What a plain-text HTTP request to the TLS port gets back before the connection closes. */
function plainHttp(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
    let answer = '';
    socket.setEncoding('latin1').on('data', (c: string) => (answer += c));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => undefined);
  });
}

describe('TLS', () => {
  let ca: TestCa;
  let rogue: TestCa;
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let serverLeaf: { cert: string; key: string };
  let appLeaf: { cert: string; key: string };
  let port: number;

  before(async () => {
    ca = createTestCa('good');
    rogue = createTestCa('rogue');
    ({ etcd, proxy, serverLeaf, appLeaf } = await startTlsPair(ca));
    port = Number(proxy.address.split(':')[1]);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
    for (const pki of [ca, rogue]) if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('serves gRPC over TLS to a client with a certificate, from a mirror fed over TLS', async () => {
    const clients = rawClients(proxy.address, tlsCredentials(ca.caCert, appLeaf));
    try {
      const put = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b('tls/k'), value: b('v') });
      assert.equal(put.error, null, put.error?.details);
      const got = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', { key: b('tls/k'), serializable: true });
      assert.equal(got.error, null, got.error?.details);
      assert.equal(got.response?.kvs?.[0]?.value.toString(), 'v');
      assert.equal((await proxy.metrics.grpcRequests.get()).values.some((v) => v.labels.method === 'Range' && v.labels.source === 'mirror'), true);
    } finally {
      clients.close();
    }
  });

  it('works for etcdctl with --cacert/--cert/--key, as against etcd', async () => {
    const flags = [`--cacert=${ca.caCert}`, `--cert=${appLeaf.cert}`, `--key=${appLeaf.key}`];
    const put = await etcdctl(`https://${proxy.address}`, [...flags, 'put', 'tls/etcdctl', 'yes']);
    assert.equal(put.code, 0, put.stderr);
    const got = await etcdctl(`https://${proxy.address}`, [...flags, 'get', 'tls/etcdctl', '--print-value-only']);
    assert.equal(got.stdout.trim(), 'yes');
    const direct = await etcdctl(etcd.clientUrl, [...flags, 'get', 'tls/etcdctl', '--print-value-only']);
    assert.equal(direct.stdout.trim(), 'yes');
  });

  it('refuses clients without a certificate, or with one the trusted CA did not sign', async () => {
    for (const [label, creds] of [
      ['no client certificate', tlsCredentials(ca.caCert)],
      ['a certificate from another CA', tlsCredentials(ca.caCert, rogue.issue('intruder'))],
    ] as const) {
      const clients = rawClients(proxy.address, creds);
      try {
        const got = await call(clients.kv, 'Range', { key: b('tls/k'), serializable: true }, { deadlineMs: 5_000 });
        assert.equal(got.error?.code, status.UNAVAILABLE, `${label}: ${got.error?.details ?? 'answered'}`);
      } finally {
        clients.close();
      }
    }
  });

  it('answers HTTP over TLS on the same port, and closes plain-text connections', async () => {
    const metrics = await httpsText(`https://127.0.0.1:${port}/metrics`, ca.caCert, appLeaf);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /etcd_cache_proxy_mirror_revision/);
    const health = await httpsText(`https://127.0.0.1:${port}/health`, ca.caCert, appLeaf);
    assert.deepEqual([health.status, JSON.parse(health.body)], [200, { health: 'true' }]);
    // etcd's JSON gateway, as APISIX speaks it over TLS.
    const range = await httpsText(`https://127.0.0.1:${port}/v3/kv/range`, ca.caCert, appLeaf, JSON.stringify({ key: b('tls/k').toString('base64') }));
    assert.equal(range.status, 200, range.body);
    assert.match(range.body, /"header":\{"cluster_id":"\d+"/);
    // The TLS handshake fails on the first plain byte (at most a TLS alert comes back, never HTTP).
    const plain = await plainHttp(port);
    assert.equal(plain.startsWith('HTTP/'), false, JSON.stringify(plain));
  });

  it('reloads its certificate from disk: new connections get the new one, an open watch keeps going', async () => {
    const watch = new WatchClient(proxy.address, { credentials: tlsCredentials(ca.caCert, appLeaf) });
    try {
      await watch.createAll([{ key: b('tls/rotate') }]);
      const before = await servedSerial(port, ca.caCert, appLeaf);
      const next = ca.issue('proxy-next');
      copyFileSync(next.key, serverLeaf.key);
      copyFileSync(next.cert, serverLeaf.cert);
      const expected = await servedSerialOf(next.cert);
      assert.notEqual(before, expected);
      await until('the new certificate to be served', async () => (await servedSerial(port, ca.caCert, appLeaf)) === expected, TLS_RELOAD_POLL_MS * 10, 100);

      const clients = rawClients(proxy.address, tlsCredentials(ca.caCert, appLeaf));
      try {
        assert.equal((await call(clients.kv, 'Put', { key: b('tls/rotate'), value: b('after') })).error, null);
      } finally {
        clients.close();
      }
      await watch.until('the event after the rotation', () => watch.responses.some((r) => (r.events?.length ?? 0) > 0));
      assert.equal(watch.ended, null, 'the watch opened before the rotation is still open');
    } finally {
      watch.close();
    }
  });

  it('re-dials etcd with rotated client certificate files; the mirror follows on the new connection', async () => {
    const leaf = ca.issue('proxy-to-etcd-rotating');
    const dir = ca.dir;
    const [cert, key] = [`${dir}/rotating.crt`, `${dir}/rotating.key`];
    copyFileSync(leaf.cert, cert);
    copyFileSync(leaf.key, key);
    const rotating = await startTestProxy([etcd.clientUrl], ['--cacert', ca.caCert, '--cert', cert, '--key', key]);
    const clients = rawClients(rotating.address);
    try {
      await rotating.mirrored();
      const moved = async (): Promise<number> => (await rotating.metrics.upstreamFailovers.get()).values.find((v) => v.labels.kind === 'mirror_watch')?.value ?? 0;
      const before = await moved();
      const next = ca.issue('proxy-to-etcd-rotated');
      copyFileSync(next.key, key);
      copyFileSync(next.cert, cert);
      await until('the mirror watch to move to the re-dialled member', async () => (await moved()) > before, TLS_RELOAD_POLL_MS * 10, 100);
      const put = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b('tls/rotated'), value: b('yes') });
      assert.equal(put.error, null, put.error?.details);
      await rotating.mirrored(Number(put.response?.header?.revision));
    } finally {
      clients.close();
      await rotating.stop();
    }
  });

  it('dials members at an IP address over TLS without Node\'s warning about SNI (DEP0123)', async () => {
    const upstreamLeaf = ca.issue('proxy-to-etcd-3');
    const process = await startProxyProcess([etcd.clientUrl], ['--cacert', ca.caCert, '--cert', upstreamLeaf.cert, '--key', upstreamLeaf.key]);
    try {
      assert.match(etcd.clientUrl, /^https:\/\/127\.0\.0\.1:/);
      await until('the proxy process to sync over TLS', async () => (await fetch(`http://${process.address}/readyz`)).status === 200);
      assert.doesNotMatch(process.stderr(), /DEP0123|ServerName to an IP address/);
    } finally {
      await process.stop();
    }
  });

  it('verifies the upstream: a proxy that does not trust etcd\'s CA never syncs; --insecure-skip-tls-verify does', async () => {
    const upstreamLeaf = ca.issue('proxy-to-etcd-2');
    const distrusting = await startTestProxy([etcd.clientUrl], ['--cacert', rogue.caCert, '--cert', upstreamLeaf.cert, '--key', upstreamLeaf.key, '--upstream-timeout', '500ms']);
    try {
      // Lost: it has tried the member for the whole upstream timeout and heard nothing it trusts.
      await until('the distrusting proxy to declare the upstream lost', async () => (await distrusting.metrics.upstreamUp.get()).values[0]?.value === 0);
      assert.equal((await distrusting.metrics.mirrorRevision.get()).values[0]?.value ?? 0, 0);
    } finally {
      await distrusting.stop();
    }
    const trusting = await startTestProxy([etcd.clientUrl], ['--insecure-skip-tls-verify', '--cert', upstreamLeaf.cert, '--key', upstreamLeaf.key]);
    try {
      await trusting.mirrored();
    } finally {
      await trusting.stop();
    }
  });
});

/** A certificate file's serial number as Node prints it (upper-case hex). */
async function servedSerialOf(certFile: string): Promise<string> {
  const { X509Certificate } = await import('node:crypto');
  return new X509Certificate(readFileSync(certFile)).serialNumber;
}
