// Integration (real etcd, the CLI with --workers 2, raw grpc-js): an answer a serving process gives from
// the mirror is one keyspace at one revision while the primary commits underneath it. The robustness
// checker found serializable and linearizable Ranges through a worker carrying keys newer than their
// header's revision (the worker's meta was its last refresh, its keys the newest commit), and a progress
// answer naming a revision whose events the worker had not sent yet.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';

interface RangeReply {
  readonly header: { readonly revision: string };
  readonly kvs?: readonly { readonly key: Buffer; readonly value: Buffer; readonly mod_revision: string }[];
}

const OWN_CONNECTION = { 'grpc.use_local_subchannel_pool': 1 };
const WRITES = 300;

describe('--workers 2: answers while the primary commits', () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  before(async () => {
    etcd = await startEtcd();
    proxy = await startProxyProcess([etcd.clientUrl], ['--workers', '2', '--shutdown-grace', '1s']);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  it("never carries a key newer than the answer's revision, and a read at that revision gives the same keys", async () => {
    const writer = rawClients(etcd.clientAddress);
    const readers: RawClients[] = Array.from({ length: 4 }, () => rawClients(proxy.address, undefined, OWN_CONNECTION));
    let writing = true;
    const problems: string[] = [];
    let checked = 0;
    try {
      const writes = (async () => {
        for (let i = 0; i < WRITES; i += 1) {
          const put = await call(writer.kv, 'Put', { key: Buffer.from(`rev/${i % 5}`), value: Buffer.from(String(i)) });
          assert.equal(put.error, null, put.error?.details);
        }
        writing = false;
      })();
      await Promise.all(
        readers.map(async (reader, n) => {
          while (writing) {
            const read = await call<RangeReply>(reader.kv, 'Range', { key: Buffer.from('rev/'), range_end: Buffer.from('rev0'), serializable: n % 2 === 0 });
            assert.equal(read.error, null, read.error?.details);
            const revision = Number(read.response?.header.revision);
            const newest = Math.max(0, ...(read.response?.kvs ?? []).map((kv) => Number(kv.mod_revision)));
            checked += 1;
            if (newest > revision) problems.push(`answered at ${revision} with a key of revision ${newest}`);
            const again = await call<RangeReply>(reader.kv, 'Range', { key: Buffer.from('rev/'), range_end: Buffer.from('rev0'), revision: String(revision), serializable: true });
            assert.equal(again.error, null, again.error?.details);
            const same = (r: RangeReply | undefined): string => (r?.kvs ?? []).map((kv) => `${kv.key.toString()}=${kv.value.toString()}@${kv.mod_revision}`).join(' ');
            if (same(again.response) !== same(read.response)) problems.push(`at ${revision}: ${same(read.response)}, read again at that revision: ${same(again.response)}`);
          }
        }),
      );
      await writes;
    } finally {
      writer.close();
      for (const reader of readers) reader.close();
    }
    assert.ok(checked > 50, `only ${checked} reads made while etcd was written`);
    assert.deepEqual(problems.slice(0, 5), [], `${problems.length} of ${checked} answers mixed revisions`);
  });
  it('answers a progress request only with a revision whose events it has sent', async () => {
    const writer = rawClients(etcd.clientAddress);
    const watch = new WatchClient(proxy.address, { ownConnection: true });
    const written: number[] = [];
    const problems: string[] = [];
    let delivered = 0;
    let progressAnswers = 0;
    try {
      const [created] = await watch.createAll([{ key: Buffer.from('prog/'), range_end: Buffer.from('prog0') }]);
      const from = Number(created?.header?.revision);
      const asking = setInterval(() => watch.progress(), 5);
      let seen = 0;
      const check = (): void => {
        for (const { response } of watch.received.slice(seen)) {
          seen += 1;
          if (response.created === true) continue;
          if ((response.events ?? []).length > 0) {
            delivered += (response.events ?? []).length;
            continue;
          }
          progressAnswers += 1;
          const revision = Number(response.header?.revision);
          const owed = written.filter((r) => r > from && r <= revision).length;
          if (delivered < owed) problems.push(`progress at ${revision} after ${delivered} of the ${owed} events up to it`);
        }
      };
      for (let i = 0; i < 200; i += 1) {
        const put = await call<{ header: { revision: string } }>(writer.kv, 'Put', { key: Buffer.from(`prog/${i % 3}`), value: Buffer.from(String(i)) });
        assert.equal(put.error, null, put.error?.details);
        written.push(Number(put.response?.header.revision));
        check();
      }
      clearInterval(asking);
      await watch.until('every event', () => watch.received.reduce((n, r) => n + (r.response.events ?? []).length, 0) >= written.length);
      check();
    } finally {
      watch.close();
      writer.close();
    }
    assert.ok(progressAnswers > 20, `only ${progressAnswers} progress answers`);
    assert.deepEqual(problems.slice(0, 5), [], `${problems.length} of ${progressAnswers} progress answers named events not sent`);
  });
});
