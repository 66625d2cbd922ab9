// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (real etcd, raw grpc-js): Range answered from the proxy's
// mirror equals etcd's own answer, field for field, for every option, over a
// generated keyspace with binary keys, and over random histories. Every
// case also checks, on the proxy's /metrics, that the mirror answered it: a
// proxy forwarding everything would give etcd's answers too.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { scrape, total } from '../support/metrics';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients, type UnaryOutcome } from '../support/raw-client';
import { until } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

interface RangeReply {
  header?: { revision?: string };
  kvs?: unknown[];
  more?: boolean;
  count?: string;
}

const REQUESTS = 'etcd_cache_proxy_grpc_requests_total';

/** A request as JSON with bytes in hex, for assertion messages. */
const show = (request: object): string =>
  JSON.stringify(request, (_k, v: unknown) => (typeof v === 'object' && v !== null && 'type' in v && (v as { type: string }).type === 'Buffer' ? Buffer.from((v as unknown as { data: number[] }).data).toString('hex') : v));
const ORDERS = ['NONE', 'ASCEND', 'DESCEND'] as const;
const TARGETS = ['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE'] as const;

/** Requests over every option a Range has. */
function rangeTable(): object[] {
  const requests: object[] = [
    { key: b('app/a') },
    { key: b('missing') },
    { key: b('app/'), range_end: b('app0') },
    { key: b('app/'), range_end: b('app0'), count_only: true },
    { key: b('app/'), range_end: b('app0'), keys_only: true },
    { key: b('app/'), range_end: b('app0'), limit: '3' },
    { key: b('app/'), range_end: b('app0'), limit: '100' },
    { key: b('app/'), range_end: b('app0'), limit: '3', count_only: true },
    { key: b('app/c'), range_end: b('app/a') }, // end before key: nothing
    { key: Buffer.from([0]), range_end: Buffer.from([0]) }, // everything
    { key: b('app/m'), range_end: Buffer.from([0]) }, // from key
    { key: Buffer.from([0xff]), range_end: Buffer.from([0]) },
    { key: Buffer.from([0x00, 0x01]), range_end: Buffer.from([0x00, 0xff]) },
    { key: b('app/'), range_end: b('app0'), min_mod_revision: '5', max_mod_revision: '20' },
    { key: b('app/'), range_end: b('app0'), min_create_revision: '4', max_create_revision: '12', limit: '2' },
    { key: b('app/'), range_end: b('app0'), serializable: true },
  ];
  for (const sort_order of ORDERS) {
    for (const sort_target of TARGETS) {
      requests.push({ key: b('sort/'), range_end: b('sort0'), sort_order, sort_target });
      requests.push({ key: b('sort/'), range_end: b('sort0'), sort_order, sort_target, limit: '2', keys_only: true });
    }
  }
  return requests;
}

describe('Range from the mirror matches etcd', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    // Listed before the first write, so the log holds every revision the tests read at.
    await proxy.mirrored();
    direct = rawClients(etcd.clientAddress);
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  /** Calls the proxy once and checks that its own count says the mirror answered (not etcd, not a refusal). */
  async function viaMirror<T>(method: 'Range' | 'Txn', request: object, label: string): Promise<UnaryOutcome<T>> {
    const counted = async (): Promise<{ all: number; mirror: number }> => {
      const samples = await scrape(proxy.url);
      return { all: total(samples, REQUESTS, { method }), mirror: total(samples, REQUESTS, { method, source: 'mirror' }) };
    };
    const before = await counted();
    const outcome = await call<T>(proxied.kv, method, request);
    let after = before;
    await until(`the proxy to count the ${method} (${label})`, async () => (after = await counted()).all > before.all, 5_000, 10);
    assert.deepEqual({ all: after.all - before.all, mirror: after.mirror - before.mirror }, { all: 1, mirror: 1 }, `not answered by the mirror: ${label}`);
    return outcome;
  }

  async function compare(request: object): Promise<void> {
    const label = show(request);
    const fromEtcd = await call<RangeReply>(direct.kv, 'Range', request);
    const fromProxy = await viaMirror<RangeReply>('Range', request, label);
    assert.equal(fromProxy.error?.details, fromEtcd.error?.details, label);
    // the header is the mirror's (revision M, upstream ids): same etcd, so equal too
    assert.deepEqual(fromProxy.response, fromEtcd.response, label);
    assert.equal(fromProxy.headers?.get('x-etcd-cache-proxy-stale').length ?? 0, 0, label);
  }

  it('answers a table of requests over a generated keyspace exactly as etcd', async () => {
    const next = random(1);
    for (let i = 0; i < 40; i += 1) {
      const name = `app/${String.fromCharCode(97 + (i % 26))}${i}`;
      await call(direct.kv, 'Put', { key: b(name), value: b(`v${Math.floor(next() * 1000)}`) });
    }
    // versions, creates and mods that differ, and no two equal in any sort target
    for (let i = 0; i < 6; i += 1) {
      for (let v = 0; v <= i; v += 1) await call(direct.kv, 'Put', { key: b(`sort/${String.fromCharCode(102 - i)}`), value: b(`${String.fromCharCode(97 + i)}${v}`) });
    }
    for (const binary of [[0x00, 0x01], [0x00, 0x02, 0xff], [0xff], [0xff, 0x00], [0x7f, 0x80, 0x81]]) {
      await call(direct.kv, 'Put', { key: Buffer.from(binary), value: Buffer.from([0, 1, 2, 255]) });
    }
    await call(direct.kv, 'DeleteRange', { key: b('app/b1') });
    const last = await call<RangeReply>(direct.kv, 'Range', { key: b('x') });
    await proxy.mirrored(Number(last.response?.header?.revision));
    for (const request of rangeTable()) await compare(request);
  });

  it('answers random ranges over a random history exactly as etcd', async () => {
    const next = random(99);
    const pick = (): Buffer => b(`rnd/${Math.floor(next() * 30)}`);
    for (let round = 0; round < 5; round += 1) {
      for (let op = 0; op < 40; op += 1) {
        const dice = next();
        if (dice < 0.6) await call(direct.kv, 'Put', { key: pick(), value: b(`${round}-${op}`) });
        else if (dice < 0.8) await call(direct.kv, 'DeleteRange', { key: pick() });
        else {
          const [from, to] = [pick(), pick()].sort(Buffer.compare);
          await call(direct.kv, 'DeleteRange', { key: from, range_end: to });
        }
      }
      const last = await call<RangeReply>(direct.kv, 'Range', { key: b('x') });
      await proxy.mirrored(Number(last.response?.header?.revision));
      for (let query = 0; query < 20; query += 1) {
        const [from, to] = [pick(), pick()].sort(Buffer.compare);
        const request: Record<string, unknown> = { key: from, range_end: next() < 0.2 ? Buffer.from([0]) : to, serializable: next() < 0.5 };
        if (next() < 0.4) request.limit = String(1 + Math.floor(next() * 5));
        if (next() < 0.3) request.sort_order = 'DESCEND';
        if (next() < 0.2) request.keys_only = true;
        if (next() < 0.2) request.count_only = true;
        if (next() < 0.2) request.min_mod_revision = String(Math.floor(next() * Number(last.response?.header?.revision)));
        // a past revision: rebuilt from the mirror's event log
        if (next() < 0.35) request.revision = String(1 + Math.floor(next() * Number(last.response?.header?.revision)));
        await compare(request);
      }
    }
  });

  it('answers read-only Txns exactly as etcd', async () => {
    const range = (key: string, extra: object = {}): object => ({ request_range: { key: b(key), ...extra } });
    const txns: object[] = [
      { compare: [{ target: 'VALUE', result: 'EQUAL', key: b('app/a0'), value: b('nope') }], success: [range('app/a0')], failure: [range('app/', { range_end: b('app0'), limit: '2' })] },
      { compare: [{ target: 'VERSION', result: 'GREATER', key: b('sort/a'), version: '2' }], success: [range('sort/a'), range('sort/', { range_end: b('sort0'), count_only: true })] },
      { compare: [{ target: 'CREATE', result: 'LESS', key: b('sort/'), range_end: b('sort0'), create_revision: '1000' }], success: [range('sort/b', { keys_only: true })] },
      { compare: [{ target: 'MOD', result: 'NOT_EQUAL', key: b('missing'), mod_revision: '0' }], success: [range('app/a0')], failure: [range('missing')] },
      { compare: [{ target: 'VALUE', result: 'EQUAL', key: b('missing'), value: b('') }], success: [range('app/a0')], failure: [range('sort/c')] },
      { compare: [{ target: 'LEASE', result: 'EQUAL', key: b('app/a0'), lease: '0' }], success: [{ request_txn: { success: [range('app/a0')] } }] },
      { success: [range('app/a0', { serializable: true })] },
      {},
    ];
    for (const txn of txns) {
      const fromEtcd = await call(direct.kv, 'Txn', txn);
      const fromProxy = await viaMirror('Txn', txn, show(txn));
      assert.equal(fromProxy.error?.details, fromEtcd.error?.details, show(txn));
      assert.deepEqual(fromProxy.response, fromEtcd.response, show(txn));
    }
  });

  it('answers ranges at every past revision from the event log', async () => {
    const last = await call<RangeReply>(direct.kv, 'Range', { key: b('x') });
    const current = Number(last.response?.header?.revision);
    await proxy.mirrored(current);
    for (let revision = Math.max(1, current - 60); revision <= current; revision += 1) {
      await compare({ key: b('rnd/'), range_end: b('rnd0'), revision: String(revision) });
      await compare({ key: b('rnd/1'), revision: String(revision), serializable: true });
    }
  });
});
