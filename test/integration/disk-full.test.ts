// Integration (real etcd, a real full disk): the proxy's data dir is a small tmpfs, filled until ENOSPC
// while writes go on through the proxy and straight to etcd. The proxy stays up, says so once in its log
// and in a metric, answers reads correctly (etcd answers what the mirror, held at its revision, cannot),
// keeps a watch without a gap or a duplicate, and catches up to etcd exactly once there is room; several
// times over, and across a SIGKILL while the disk is full. Needs root (mount); skipped with the reason
// when the machine refuses the mount.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { metric } from '../support/metrics';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { fillUp, mountTmpfs, unmountTmpfs } from '../support/tmpfs';
import { sleep, until } from '../support/until';
import { eventsOf, WatchClient, type WireEvent } from '../support/watch-client';

const TMPFS_BYTES = 64 * 1024 * 1024;
const PREFIX = '/disk-full/';
/** Values large enough that each commit needs new pages of the mirror's file (LMDB reuses freed ones first). */
const VALUE_BYTES = 48 * 1024;
/** lmdb-js aborted the process in about one fill in twenty before the store held its writes back. */
const CYCLES = 15;
/** A list of the prefix is several MiB (grpc-js refuses more than 4 by default). */
const UNLIMITED = { 'grpc.max_receive_message_length': -1 };
const FULL = 'etcd_cache_proxy_store_full';
const FAILURES = 'etcd_cache_proxy_store_write_failures_total';
const REVISION = 'etcd_cache_proxy_mirror_revision';

interface RangeReply {
  header: { revision: string };
  kvs?: { key: Buffer; value: Buffer; mod_revision: string; version: string }[];
  count?: string;
}

const prefixEnd = (prefix: string): Buffer => {
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  return end;
};

/** A prefix's keys as "key@mod_revision:value length:first byte", to compare two answers. */
const listing = (reply: RangeReply | undefined): string[] =>
  (reply?.kvs ?? []).map((kv) => `${kv.key.toString()}@${kv.mod_revision}:${kv.value.length}:${kv.value[0] ?? ''}`);

const described = (events: readonly WireEvent[]): string[] =>
  events.map((e) => `${e.type ?? 'PUT'} ${e.kv?.key?.toString() ?? ''}@${e.kv?.mod_revision ?? ''}:${e.kv?.value?.length ?? 0}`);

/** The mount this test needs, or why not. */
function tmpfsRefusal(dir: string): string | null {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const mounted = mountTmpfs(dir, TMPFS_BYTES);
  return mounted.ok ? null : mounted.reason;
}

const scratch = mkdtempSync(join(tmpdir(), 'ecp-disk-full-'));
const dataDir = join(scratch, 'data');
mkdirSync(dataDir);
const refused = tmpfsRefusal(dataDir);
if (refused !== null) rmSync(scratch, { recursive: true, force: true });

describe('a full disk under the mirror: degraded, correct, never a crash', { skip: refused ?? false }, () => {
  let etcd: EtcdServer;
  let proxy: ProxyProcess;
  let viaProxy: RawClients;
  let direct: RawClients;
  let written = 0;

  const put = async (clients: RawClients, key: string): Promise<number> => {
    written += 1;
    const value = Buffer.alloc(VALUE_BYTES, written % 251);
    const outcome = await call<{ header: { revision: string } }>(clients.kv, 'Put', { key: Buffer.from(PREFIX + key), value }, { deadlineMs: 5_000 });
    if (outcome.error !== null && clients === viaProxy) await stillAlive();
    assert.equal(outcome.error, null, `Put ${key}: ${outcome.error?.details ?? ''}`);
    return Number(outcome.response?.header.revision);
  };
  const range = async (clients: RawClients, serializable: boolean, key = PREFIX, end: Buffer | undefined = prefixEnd(PREFIX)): Promise<RangeReply> => {
    const outcome = await call<RangeReply>(clients.kv, 'Range', { key: Buffer.from(key), ...(end === undefined ? {} : { range_end: end }), serializable }, { deadlineMs: 5_000 });
    if (outcome.error !== null) await stillAlive();
    assert.equal(outcome.error, null, `Range ${key}: ${outcome.error?.details ?? ''}`);
    return outcome.response as RangeReply;
  };
  const etcdRevision = async (): Promise<number> => Number((await range(direct, false, '/none', undefined)).header.revision);
  const scrape = (name: string, labels: Record<string, string> = {}): Promise<number> => metric(`http://${proxy.address}`, name, labels);
  const said = (what: string): number => (proxy.stdout() + proxy.stderr()).split('\n').filter((line) => line.includes(what)).length;
  const logTail = (): string => `${proxy.stdout().slice(-3_000)}\n${proxy.stderr().slice(-3_000)}`;
  const alive = (): void => assert.ok(proxy.child.exitCode === null && proxy.child.signalCode === null, `the proxy exited while its disk was full:\n${logTail()}`);

  /** A call failed: was it that the proxy died? (Its exit is seen a moment after its connections drop.) */
  const stillAlive = async (): Promise<void> => {
    await Promise.race([proxy.exited, sleep(1_000)]);
    alive();
  };

  /** Writes straight to etcd (every other one through the proxy) until the proxy's store holds its writes back. */
  const writeUntilFull = async (cycle: number): Promise<void> => {
    for (let i = 0; (await scrape(FULL)) !== 1; i += 1) {
      alive();
      assert.ok(i < 400, `the store never said it was full after ${i} writes`);
      await put(i % 2 === 0 ? direct : viaProxy, `c${cycle}-k${i % 40}`);
    }
  };

  before(async () => {
    etcd = await startEtcd();
    proxy = await startProxyProcess([etcd.clientUrl], [], { dataDir });
    viaProxy = rawClients(proxy.address, undefined, UNLIMITED);
    direct = rawClients(etcd.clientUrl.replace('http://', ''), undefined, UNLIMITED);
  });
  after(async () => {
    viaProxy?.close();
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
    unmountTmpfs(dataDir);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('holds writes, serves correctly and catches up exactly, fill after fill', async () => {
    await put(direct, 'seed');
    await until('the mirror to sync', async () => (await scrape(REVISION)) >= (await etcdRevision()));
    const start = (await etcdRevision()) + 1;
    const watched = new WatchClient(proxy.address);
    const truth = new WatchClient(etcd.clientUrl.replace('http://', ''));
    try {
      const create = { key: Buffer.from(PREFIX), range_end: prefixEnd(PREFIX), start_revision: start };
      await watched.createAll([create]);
      await truth.createAll([create]);
      for (let cycle = 0; cycle < CYCLES; cycle += 1) {
        const filler = fillUp(dataDir);
        try {
          await writeUntilFull(cycle);
          const held = await scrape(REVISION);
          assert.ok((await scrape(FAILURES, { reason: 'no_space' })) >= cycle + 1, 'the failed write is counted');
          // Writes go on; the mirror stays at its revision and says so, and etcd answers what needs newer.
          for (let i = 0; i < 6; i += 1) {
            const acknowledged = await put(i % 2 === 0 ? direct : viaProxy, `c${cycle}-held${i}`);
            const fresh = await range(viaProxy, false, `${PREFIX}c${cycle}-held${i}`, undefined);
            assert.ok(Number(fresh.header.revision) >= acknowledged, `a linearizable read after the write at ${acknowledged} answered at ${fresh.header.revision}`);
            assert.deepEqual(listing(fresh), listing(await range(direct, false, `${PREFIX}c${cycle}-held${i}`, undefined)));
            if (i % 2 === 1) {
              // The proxy's own client reads its write, serializable too (the mirror, behind it, does not answer).
              const own = await range(viaProxy, true, `${PREFIX}c${cycle}-held${i}`, undefined);
              assert.ok(Number(own.header.revision) >= acknowledged, `a serializable read after this proxy's write at ${acknowledged} answered at ${own.header.revision}`);
            }
          }
          const whole = await range(viaProxy, false);
          assert.deepEqual(listing(whole), listing(await range(direct, false)), 'a linearizable list while full is etcd\'s');
          alive();
          assert.equal(await scrape(FULL), 1, 'still full');
          assert.equal(await scrape(REVISION), held, 'the mirror does not move while its writes are held');
        } finally {
          filler.remove();
        }
        const target = await etcdRevision();
        await until(() => `the mirror to catch up to ${target} after room came back (cycle ${cycle}); the proxy said:\n${logTail()}`, async () => (await scrape(FULL)) === 0 && (await scrape(REVISION)) >= target, 20_000, 100);
        // The mirror's own answer (serializable, at its revision) is etcd's keyspace at that revision.
        const mirrored = await range(viaProxy, true);
        const etcdAt = await call<RangeReply>(direct.kv, 'Range', { key: Buffer.from(PREFIX), range_end: prefixEnd(PREFIX), revision: mirrored.header.revision });
        assert.deepEqual(listing(mirrored), listing(etcdAt.response), `cycle ${cycle}: the mirror equals etcd at ${mirrored.header.revision}`);
      }
      const last = await etcdRevision();
      const reached = (client: WatchClient): boolean => eventsOf(client.responses).some((e) => Number(e.kv?.mod_revision) >= last - 1);
      await watched.until('the proxy watch to reach etcd', () => reached(watched) && reached(truth), 20_000);
      await truth.until('the etcd watch to reach etcd', () => reached(truth), 20_000);
      assert.deepEqual(described(eventsOf(watched.responses)), described(eventsOf(truth.responses)), 'the watch through the proxy has etcd\'s events, once each, in order');
      assert.equal(watched.ended, null, 'the watch stayed open');
    } finally {
      watched.close();
      truth.close();
    }
    // One line when writes stop, one when they resume, per fill: not one per event.
    assert.equal(said('mirror store is full'), CYCLES, proxy.stdout().slice(-3_000));
    assert.equal(said('mirror store has room again'), CYCLES);
  });

  it('comes back consistent after a SIGKILL while its disk is full', async () => {
    const filler = fillUp(dataDir);
    try {
      await writeUntilFull(100);
      await put(direct, 'while-killed');
      proxy.child.kill('SIGKILL');
      await proxy.exited;
    } finally {
      filler.remove();
    }
    viaProxy.close();
    proxy = await startProxyProcess([etcd.clientUrl], [], { dataDir });
    viaProxy = rawClients(proxy.address, undefined, UNLIMITED);
    const target = await etcdRevision();
    await until(`the restarted mirror to reach ${target}`, async () => (await scrape(REVISION)) >= target, 20_000, 100);
    const mirrored = await range(viaProxy, true);
    const etcdAt = await call<RangeReply>(direct.kv, 'Range', { key: Buffer.from(PREFIX), range_end: prefixEnd(PREFIX), revision: mirrored.header.revision });
    assert.deepEqual(listing(mirrored), listing(etcdAt.response), 'the mirror equals etcd after the restart');
    assert.equal(await scrape(FULL), 0);
  });

  it('starts on a disk that is still full, serves correctly, and catches up once there is room', async () => {
    const filler = fillUp(dataDir);
    try {
      await writeUntilFull(200);
      proxy.child.kill('SIGKILL');
      await proxy.exited;
      viaProxy.close();
      proxy = await startProxyProcess([etcd.clientUrl], [], { dataDir });
      viaProxy = rawClients(proxy.address, undefined, UNLIMITED);
      const acknowledged = await put(direct, 'after-restart');
      await until('the restarted store to say it is full', async () => (await scrape(FULL)) === 1, 20_000, 100);
      const fresh = await range(viaProxy, false);
      assert.ok(Number(fresh.header.revision) >= acknowledged);
      assert.deepEqual(listing(fresh), listing(await range(direct, false)), 'a linearizable list is etcd\'s');
      alive();
    } finally {
      filler.remove();
    }
    const target = await etcdRevision();
    await until(`the mirror to reach ${target} once there is room`, async () => (await scrape(FULL)) === 0 && (await scrape(REVISION)) >= target, 20_000, 100);
    const mirrored = await range(viaProxy, true);
    const etcdAt = await call<RangeReply>(direct.kv, 'Range', { key: Buffer.from(PREFIX), range_end: prefixEnd(PREFIX), revision: mirrored.header.revision });
    assert.deepEqual(listing(mirrored), listing(etcdAt.response), 'the mirror equals etcd');
  });
});
