// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, raw grpc-js and the JSON gateway): a Txn whose
// branches hold only Range ops is a read (docs/design.md, "Consistency"). When the
// mirror cannot answer it (keys outside --mirror-prefix) it is forwarded like
// any read, in read-only mode and during an outage alike, never refused as a
// write; a Txn with a write anywhere in it still is.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Reader, util } from 'protobufjs';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { b64, httpCall } from '../support/http-gateway';
import { gauge, metric } from '../support/metrics';
import { startProxyProcess, startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const MIRRORED = '/apisix/';
const READ_ONLY = 'etcd-cache-proxy: read-only proxy rejects writes';
const UPSTREAM_LOST = 'etcd-cache-proxy: upstream cluster unreachable, writes rejected';
const REQUESTS = 'etcd_cache_proxy_grpc_requests_total';

/** Reads only, of a key outside the mirrored prefix: the mirror cannot answer it. */
const readOnlyTxn = {
  compare: [{ target: 'VALUE', result: 'EQUAL', key: b('/outside/k'), value: b('v') }],
  success: [{ request_range: { key: b('/outside/k') } }, { request_txn: { success: [{ request_range: { key: b('/outside/'), range_end: b('/outside0'), count_only: true } }] } }],
  failure: [{ request_range: { key: b('/outside/missing') } }],
};

/** Txns with a write somewhere: refused, even when the write sits in a branch that would not run. */
const writeTxns: Record<string, object> = {
  'a Put in success': { success: [{ request_range: { key: b('/outside/k') } }, { request_put: { key: b('/outside/k'), value: b('written') } }] },
  'a DeleteRange in failure': {
    compare: [{ target: 'VERSION', result: 'GREATER', key: b('/outside/k'), version: '0' }],
    success: [{ request_range: { key: b('/outside/k') } }],
    failure: [{ request_delete_range: { key: b('/outside/k') } }],
  },
  'a Put in a nested Txn': { success: [{ request_txn: { success: [{ request_put: { key: b('/outside/k'), value: b('written') } }] } }] },
  'a Put of a mirrored key': { success: [{ request_put: { key: b('/apisix/k'), value: b('written') } }] },
};

/** A read-only Txn of a mirrored key nested `levels` deep (etcd takes up to --max-txn-ops, 128 by default). */
function nestedMirroredRead(levels: number): object {
  let txn: object = { success: [{ request_range: { key: b('/apisix/k') } }] };
  for (let level = 1; level < levels; level += 1) txn = { success: [{ request_txn: txn }] };
  return txn;
}

interface TxnReply {
  succeeded?: boolean;
  responses?: unknown[];
}

describe('a read-only Txn is a read', () => {
  let etcd: EtcdServer;
  let direct: RawClients;

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    for (const [k, v] of [['/outside/k', 'v'], ['/outside/l', 'w'], ['/apisix/k', 'a']] as const) {
      assert.equal((await call(direct.kv, 'Put', { key: b(k), value: b(v) })).error, null);
    }
  });
  after(async () => {
    direct?.close();
    await etcd?.stop();
  });

  /** Nothing a refused write Txn held reached etcd. */
  async function unchanged(): Promise<void> {
    const kvs = (await call<{ kvs?: { key: Buffer; value: Buffer }[] }>(direct.kv, 'Range', { key: b('/'), range_end: b('0') })).response?.kvs ?? [];
    assert.deepEqual(
      kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`),
      ['/apisix/k=a', '/outside/k=v', '/outside/l=w'],
    );
  }

  it('--mode=readonly forwards a read-only Txn outside the mirrored prefixes and answers with etcd\'s answer; a Txn with a write is refused', async () => {
    const proxy: TestProxy = await startTestProxy([etcd.clientUrl], ['--mode', 'readonly', '--mirror-prefix', MIRRORED]);
    const clients = rawClients(proxy.address);
    try {
      await proxy.mirrored();
      const forwardedBefore = await metric(proxy.url, REQUESTS, { method: 'Txn', source: 'upstream' });
      const fromEtcd = await call<TxnReply>(direct.kv, 'Txn', readOnlyTxn);
      const fromProxy = await call<TxnReply>(clients.kv, 'Txn', readOnlyTxn);
      assert.equal(fromProxy.error, null, fromProxy.error?.details);
      assert.deepEqual(fromProxy.response, fromEtcd.response);
      assert.equal(fromProxy.response?.succeeded, true);
      assert.equal((await metric(proxy.url, REQUESTS, { method: 'Txn', source: 'upstream' })) - forwardedBefore, 1, 'the Txn went to etcd');

      // The JSON gateway: the same Txn, 200 with etcd's own JSON.
      const json = JSON.stringify({ compare: [{ target: 'VALUE', result: 'EQUAL', key: b64('/outside/k'), value: b64('v') }], success: [{ request_range: { key: b64('/outside/k') } }] });
      const [etcdHttp, proxyHttp] = await Promise.all([httpCall(etcd.clientUrl, '/v3/kv/txn', json), httpCall(proxy.url, '/v3/kv/txn', json)]);
      assert.equal(proxyHttp.status, 200, proxyHttp.text);
      assert.deepEqual(proxyHttp.json, etcdHttp.json);

      const rejectedBefore = await metric(proxy.url, 'etcd_cache_proxy_writes_rejected_total', { reason: 'readonly' });
      for (const [name, txn] of Object.entries(writeTxns)) {
        const refused = await call(clients.kv, 'Txn', txn);
        assert.deepEqual([refused.error?.code, refused.error?.details], [status.UNIMPLEMENTED, READ_ONLY], name);
      }
      const putJson = JSON.stringify({ success: [{ request_put: { key: b64('/outside/k'), value: b64('written') } }] });
      const refusedHttp = await httpCall(proxy.url, '/v3/kv/txn', putJson);
      assert.equal(refusedHttp.status, 501, refusedHttp.text);
      assert.match(refusedHttp.text, /read-only proxy rejects writes/);
      const rejected = (await metric(proxy.url, 'etcd_cache_proxy_writes_rejected_total', { reason: 'readonly' })) - rejectedBefore;
      assert.equal(rejected, Object.keys(writeTxns).length + 1, 'only the Txns with a write are counted as refused writes');
      await unchanged();
    } finally {
      clients.close();
      await proxy.stop();
    }
  });

  it('--mode=readonly answers a read-only Txn nested deeper than protobufjs\'s default limit as a read, before any JSON request as after', async () => {
    // The proxy in its own process: protobufjs's limits are per process, and this one raises them for its client
    // (which encodes with protobufjs too, and stops at 100 nested messages by default).
    const limits = [util.recursionLimit, Reader.recursionLimit];
    util.recursionLimit = 1_024;
    Reader.recursionLimit = 1_024;
    const revision = Number((await call<{ header?: { revision?: string } }>(direct.kv, 'Range', { key: b('/apisix/k') })).response?.header?.revision);
    const proxy = await startProxyProcess([etcd.clientUrl], ['--mode', 'readonly', '--log-level', 'error']);
    const url = `http://${proxy.address}`;
    const clients = rawClients(proxy.address);
    try {
      await until('the mirror to sync', async () => (await gauge(url, 'etcd_cache_proxy_mirror_revision')) >= revision, 20_000);
      const deep = nestedMirroredRead(110);
      const fromEtcd = await call<TxnReply>(direct.kv, 'Txn', deep);
      assert.equal(fromEtcd.error, null, fromEtcd.error?.details);
      // Nothing has loaded the JSON gateway's tables in this proxy yet.
      const first = await call<TxnReply>(clients.kv, 'Txn', deep);
      assert.equal(first.error, null, `refused: ${first.error?.details}`);
      assert.deepEqual(first.response?.responses, fromEtcd.response?.responses);
      // After a JSON request: the same answer.
      assert.equal((await httpCall(url, '/v3/kv/range', JSON.stringify({ key: b64('/apisix/k') }))).status, 200);
      const after = await call<TxnReply>(clients.kv, 'Txn', deep);
      assert.equal(after.error, null, after.error?.details);
      assert.deepEqual(after.response?.responses, fromEtcd.response?.responses);
    } finally {
      [util.recursionLimit, Reader.recursionLimit] = limits as [number, number];
      clients.close();
      await proxy.stop();
    }
  });

  it('during an upstream outage a read-only Txn outside the mirrored prefixes gets what a read of its keys gets, not the write refusal', async () => {
    const own = await startEtcd();
    const ownDirect = rawClients(own.clientAddress);
    const proxy = await startTestProxy([own.clientUrl], ['--upstream-timeout', '1s', '--mirror-prefix', MIRRORED]);
    const clients = rawClients(proxy.address);
    try {
      for (const [k, v] of [['/outside/k', 'v'], ['/apisix/k', 'a']] as const) assert.equal((await call(ownDirect.kv, 'Put', { key: b(k), value: b(v) })).error, null);
      await proxy.mirrored(3);
      // Upstream healthy: forwarded, etcd's answer.
      const healthy = await call<TxnReply>(clients.kv, 'Txn', readOnlyTxn);
      assert.equal(healthy.error, null, healthy.error?.details);
      assert.equal(healthy.response?.succeeded, true);

      own.signal('SIGKILL');
      await until('the proxy to declare the upstream lost', async () => (await gauge(proxy.url, 'etcd_cache_proxy_upstream_up')) === 0, 15_000);
      const range = await call(clients.kv, 'Range', { key: b('/outside/k') }, { deadlineMs: 5_000 });
      assert.notEqual(range.error, null, 'a key outside the mirror cannot be read without etcd');
      const txn = await call(clients.kv, 'Txn', readOnlyTxn, { deadlineMs: 5_000 });
      assert.notEqual(txn.error, null, 'nor can a Txn that reads it');
      assert.equal(txn.error?.code, range.error?.code, `Txn: ${txn.error?.details}; Range: ${range.error?.details}`);
      assert.notEqual(txn.error?.details, UPSTREAM_LOST, 'a read-only Txn was refused as a write');

      // A read-only Txn of mirrored keys only: answered from the mirror, marked stale.
      const mirrored = await call<TxnReply>(clients.kv, 'Txn', { success: [{ request_range: { key: b('/apisix/k') } }] }, { deadlineMs: 5_000 });
      assert.equal(mirrored.error, null, mirrored.error?.details);
      assert.deepEqual(mirrored.headers?.get('x-etcd-cache-proxy-stale'), ['true']);

      const write = await call(clients.kv, 'Txn', writeTxns['a Put in success'] ?? {}, { deadlineMs: 5_000 });
      assert.deepEqual([write.error?.code, write.error?.details], [status.UNAVAILABLE, UPSTREAM_LOST]);
    } finally {
      clients.close();
      ownDirect.close();
      await proxy.stop();
      await own.stop();
    }
  });
});
