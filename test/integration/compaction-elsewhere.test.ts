// Integration (real etcd, differential): a compaction the proxy did not make
// (through another proxy, or by a client of etcd itself) is answered the way
// etcd answers it while etcd is reachable: a watch or a read below etcd's
// compact revision gets etcd's compacted answer, not a replay from the log.
// Above it, the mirror still answers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient, type WireWatchResponse } from '../support/watch-client';

const key = (s: string): Buffer => Buffer.from(s);
const COMPACTED = 'etcdserver: mvcc: required revision has been compacted';

interface Revisioned {
  header: { revision: string };
}

/** What a watch created from `start` on `key` gets first, beyond its headers: etcd's words and the proxy's compared. */
async function firstAnswers(address: string, watchKey: string, start: number): Promise<{ answers: object[]; stream: WatchClient }> {
  const stream = new WatchClient(address);
  stream.create({ key: key(watchKey), start_revision: start });
  await stream.until('the watch to be answered: created, then events or a cancel', () => stream.responses.length >= 2 || stream.responses.some((r) => r.canceled === true && r.created !== true));
  const answers = stream.responses.map((r: WireWatchResponse) => ({
    created: r.created ?? false,
    canceled: r.canceled ?? false,
    compact_revision: r.compact_revision ?? '0',
    events: (r.events ?? []).map((e) => Number(e.kv?.mod_revision)),
  }));
  return { answers, stream };
}

describe('a compaction made elsewhere', () => {
  let etcd: EtcdServer;
  let proxyA: TestProxy;
  let proxyB: TestProxy;
  let viaA: RawClients;
  let viaB: RawClients;
  let direct: RawClients;
  const revisions: number[] = [];

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    proxyA = await startTestProxy([etcd.clientUrl]);
    proxyB = await startTestProxy([etcd.clientUrl]);
    viaA = rawClients(proxyA.address);
    viaB = rawClients(proxyB.address);
    for (let i = 0; i < 10; i += 1) {
      const put = await call<Revisioned>(viaA.kv, 'Put', { key: key('foo'), value: key(`v${i}`) });
      assert.equal(put.error, null);
      revisions.push(Number(put.response?.header.revision));
    }
    await proxyB.mirrored(revisions[9]);
  });
  after(async () => {
    for (const clients of [viaA, viaB, direct]) clients?.close();
    await proxyA?.stop();
    await proxyB?.stop();
    await etcd?.stop();
  });

  const rev = (i: number): number => revisions[i] ?? NaN;

  it('through another proxy: a watch below it on this proxy is cancelled with etcd\'s compact revision, on a stream that stays open', async () => {
    assert.equal((await call(viaA.kv, 'Compact', { revision: String(rev(5)) })).error, null);
    const fromEtcd = await firstAnswers(etcd.clientAddress, 'foo', rev(2));
    const fromProxy = await firstAnswers(proxyB.address, 'foo', rev(2));
    try {
      assert.deepEqual(fromEtcd.answers, [
        { created: true, canceled: false, compact_revision: '0', events: [] },
        { created: false, canceled: true, compact_revision: String(rev(5)), events: [] },
      ]);
      assert.deepEqual(fromProxy.answers, fromEtcd.answers);
      // The stream outlives the cancelled watch: a watch from the compact revision on replays what is left.
      fromProxy.stream.create({ key: key('foo'), start_revision: rev(5) });
      const replay = await fromProxy.stream.next('the replay from the compact revision', (r) => (r.events ?? []).length > 0);
      assert.deepEqual(
        (replay.events ?? []).map((e) => Number(e.kv?.mod_revision)),
        revisions.slice(5),
      );
    } finally {
      fromEtcd.stream.close();
      fromProxy.stream.close();
    }
  });

  it('through another proxy: a read at a revision below it gets etcd\'s compacted error; one above it is answered', async () => {
    for (const serializable of [false, true]) {
      const request = { key: key('foo'), revision: String(rev(3)), serializable };
      const fromEtcd = await call(direct.kv, 'Range', request);
      const fromProxy = await call(viaB.kv, 'Range', request);
      assert.equal(fromEtcd.error?.details, COMPACTED);
      assert.deepEqual({ code: fromProxy.error?.code, details: fromProxy.error?.details }, { code: fromEtcd.error?.code, details: fromEtcd.error?.details });
      const kept = { key: key('foo'), revision: String(rev(7)), serializable };
      const keptFromProxy = await call<{ kvs?: { value: Buffer }[] }>(viaB.kv, 'Range', kept);
      assert.equal(keptFromProxy.error, null);
      assert.equal(keptFromProxy.response?.kvs?.[0]?.value.toString(), 'v7');
    }
  });

  it('made on etcd directly: the same, and the mirror still serves watches and reads above it', async () => {
    assert.equal((await call(direct.kv, 'Compact', { revision: String(rev(8)) })).error, null);
    const fromEtcd = await firstAnswers(etcd.clientAddress, 'foo', rev(6));
    const fromProxy = await firstAnswers(proxyB.address, 'foo', rev(6));
    fromEtcd.stream.close();
    fromProxy.stream.close();
    assert.deepEqual(fromProxy.answers, fromEtcd.answers);
    assert.equal(fromProxy.answers[1]?.['compact_revision' as keyof object], String(rev(8)));
    const read = await call(viaB.kv, 'Range', { key: key('foo'), revision: String(rev(7)) });
    assert.equal(read.error?.details, COMPACTED);

    const mirrorAnswered = async (): Promise<number> =>
      (await proxyB.metrics.grpcRequests.get()).values.filter((v) => v.labels.method === 'Range' && v.labels.source === 'mirror').reduce((sum, v) => sum + v.value, 0);
    const before = await mirrorAnswered();
    const above = await call<{ kvs?: { value: Buffer }[] }>(viaB.kv, 'Range', { key: key('foo'), revision: String(rev(8)) });
    assert.equal(above.response?.kvs?.[0]?.value.toString(), 'v8');
    assert.equal((await mirrorAnswered()) - before, 1, 'a read above the compaction is the mirror\'s');
    const watch = await firstAnswers(proxyB.address, 'foo', rev(8));
    watch.stream.close();
    assert.deepEqual(watch.answers[1]?.['events' as keyof object], revisions.slice(8));
    const replayed = (await proxyB.metrics.watchEventsReplayed.get()).values[0]?.value ?? 0;
    assert.ok(replayed > 0, 'replayed from the mirror\'s log');
  });
});
