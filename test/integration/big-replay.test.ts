// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, differential): a watch that replays ten values of
// 1 MiB (etcd's request limit at 1.5 MiB), with and without `fragment`, and
// with a client that takes at most 1.5 MiB per message. etcd delivers the ten
// events (fragmented: one per message; whole: one message of 10 MiB, which
// such a client refuses with RESOURCE_EXHAUSTED) at once; the proxy answers
// the same, from its log and by relaying a start older than its log, and
// about as soon.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const MIB = 1024 * 1024;
const CLIENT_LIMIT = 1.5 * MIB;

interface Outcome {
  /** Events received, in order, as their mod revisions. */
  readonly revisions: number[];
  /** Messages that carried events. */
  readonly messages: number;
  /** How the stream ended, if it did. */
  readonly end: string | null;
  readonly ms: number;
}

async function replay(address: string, fragment: boolean, start: number): Promise<Outcome> {
  const started = performance.now();
  const watch = new WatchClient(address, { ownConnection: true, maxReceiveBytes: CLIENT_LIMIT });
  try {
    watch.create({ key: b('/big/'), range_end: b('/big0'), start_revision: start, fragment });
    const received = (): number => watch.responses.reduce((sum, r) => sum + (r.events ?? []).length, 0);
    await watch.until('ten events, or the end of the stream', () => received() >= 10 || watch.ended !== null, 30_000).catch(() => undefined);
    const withEvents = watch.responses.filter((r) => (r.events ?? []).length > 0);
    return {
      revisions: withEvents.flatMap((r) => (r.events ?? []).map((e) => Number(e.kv?.mod_revision))),
      messages: withEvents.length,
      end: watch.ended === null ? null : status[watch.ended.code] ?? String(watch.ended.code),
      ms: performance.now() - started,
    };
  } finally {
    watch.close();
  }
}

describe('a replay of big values', () => {
  let etcd: EtcdServer;
  /** Started before the writes: its log replays them. */
  let early: TestProxy;
  /** Started after them: a start below its log is relayed to etcd. */
  let late: TestProxy;
  let direct: RawClients;
  let first = 0;

  before(async () => {
    etcd = await startEtcd({ extraArgs: ['--max-request-bytes=1572864'] });
    early = await startTestProxy([etcd.clientUrl]);
    direct = rawClients(etcd.clientAddress);
    for (let i = 0; i < 10; i += 1) {
      const put = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b(`/big/${i}`), value: Buffer.alloc(MIB, 65 + i) });
      assert.equal(put.error, null);
      if (i === 0) first = Number(put.response?.header.revision);
    }
    late = await startTestProxy([etcd.clientUrl]);
    await early.mirrored(first + 9);
    await late.mirrored(first + 9);
  });
  after(async () => {
    direct?.close();
    await early?.stop();
    await late?.stop();
    await etcd?.stop();
  });

  for (const fragment of [true, false]) {
    it(`${fragment ? 'fragmented' : 'whole'}: as etcd, and about as soon`, async () => {
      const fromEtcd = await replay(etcd.clientAddress, fragment, 1);
      if (fragment) assert.deepEqual({ ...fromEtcd, ms: 0 }, { revisions: Array.from({ length: 10 }, (_, i) => first + i), messages: 10, end: null, ms: 0 });
      else assert.deepEqual({ ...fromEtcd, ms: 0 }, { revisions: [], messages: 0, end: 'RESOURCE_EXHAUSTED', ms: 0 });
      for (const [name, proxy] of [['from the log', early], ['relayed', late]] as const) {
        const proxied = await replay(proxy.address, fragment, 1);
        assert.deepEqual({ ...proxied, ms: 0 }, { ...fromEtcd, ms: 0 }, name);
        // Generous for a shared machine; the fault this guards against took several seconds.
        assert.ok(proxied.ms < Math.max(3_000, 4 * fromEtcd.ms), `${name}: ${proxied.ms.toFixed(0)} ms, etcd ${fromEtcd.ms.toFixed(0)} ms`);
      }
    });
  }
});
