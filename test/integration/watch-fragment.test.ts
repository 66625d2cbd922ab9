// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (real etcd with --max-request-bytes 1.5 MiB), etcd's own
// TestWatchFragment with a proxy in front: ten 1 MiB values just written,
// then a watch from revision 1 over them (below the mirror's log, so relayed
// to etcd) with `fragment`, with and without a client receive limit of
// 1.5 MiB: through the proxy all ten arrive, in etcd's fragments (one value
// each, none over the client's limit). Both times are printed side by side
// as a diagnostic; speed is measured in bench/, not asserted here.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient } from '../support/watch-client';

const MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
const VALUES = 10;
const b = (s: string): Buffer => Buffer.from(s);

describe('a fragmented watch over ten 1 MiB values', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let round = 0;

  before(async () => {
    etcd = await startEtcd({ extraArgs: [`--max-request-bytes=${MAX_REQUEST_BYTES}`] });
    direct = rawClients(etcd.clientAddress);
    proxy = await startTestProxy([etcd.clientUrl]);
    await proxy.mirrored();
  });
  after(async () => {
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  /** Writes ten 1 MiB values under a fresh prefix, all at once, and returns the prefix. */
  const writeValues = async (): Promise<string> => {
    round += 1;
    const prefix = `foo${round}/`;
    const outcomes = await Promise.all(
      Array.from({ length: VALUES }, (_, i) => call(direct.kv, 'Put', { key: b(`${prefix}${i}`), value: Buffer.alloc(1024 * 1024, 'a') })),
    );
    for (const outcome of outcomes) assert.equal(outcome.error, null);
    return prefix;
  };

  /** Milliseconds from the create to the tenth event, on a fresh stream to `address`. */
  const timeWatch = async (address: string, prefix: string, maxReceiveBytes: number | undefined): Promise<number> => {
    const client = new WatchClient(address, maxReceiveBytes === undefined ? {} : { maxReceiveBytes });
    try {
      const started = performance.now();
      client.create({ key: b(prefix), range_end: b(`${prefix.slice(0, -1)}0`), start_revision: 1, fragment: true });
      const events = (): number => client.responses.flatMap((r) => r.events ?? []).length;
      await client.until(`${VALUES} events`, () => events() >= VALUES, 20_000);
      const elapsed = performance.now() - started;
      assert.equal(events(), VALUES);
      assert.ok(client.responses.every((r) => r.canceled !== true), 'no cancel');
      // As etcd splits them at its limit: one value per message, the last one whole.
      const shape = client.responses.filter((r) => (r.events?.length ?? 0) > 0).map((r) => `${r.events?.length}${r.fragment === true ? 'f' : ''}`);
      assert.deepEqual(shape, [...Array.from({ length: VALUES - 1 }, () => '1f'), '1']);
      return elapsed;
    } finally {
      client.close();
    }
  };

  for (const limit of [undefined, MAX_REQUEST_BYTES]) {
    it(`delivers all ten in etcd's fragments (client receive limit: ${limit ?? 'none'})`, async (t) => {
      const prefix = await writeValues();
      // The proxy first, while its mirror still takes in the values (as right after the writes in etcd's test).
      const viaProxy = await timeWatch(proxy.address, prefix, limit);
      const viaEtcd = await timeWatch(etcd.clientAddress, prefix, limit);
      t.diagnostic(`etcd ${viaEtcd.toFixed(0)} ms, proxy ${viaProxy.toFixed(0)} ms`);
    });
  }
});
