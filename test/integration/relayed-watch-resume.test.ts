// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, SIGKILLed and restarted on its data dir): a watch the
// proxy relays to etcd (keys outside --mirror-prefix, or a start below the
// mirror's log) must live through its member dropping the proxy's
// connections, as etcd's own client keeps a watch through it: 100 watches on
// four client streams, some created and cancelled while etcd is down, each
// getting exactly etcd's history for its range from its start revision (read
// at the end from etcd itself), none cancelled by the proxy, no stream ended.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until } from '../support/until';
import { WatchClient, type WatchCreate, type WireEvent, type WireWatchResponse } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const prefix = (p: string): { key: Buffer; range_end: Buffer } => ({ key: b(p), range_end: b(`${p.slice(0, -1)}${String.fromCharCode(p.charCodeAt(p.length - 1) + 1)}`) });

/** An event as comparable text. */
const text = (event: WireEvent): string =>
  `${event.type ?? 'PUT'} ${event.kv?.key?.toString()}=${event.kv?.value?.toString() ?? ''} m${event.kv?.mod_revision ?? 0}${event.prev_kv === undefined ? '' : ` prev=${event.prev_kv.value?.toString() ?? ''}`}`;
const modRevision = (event: WireEvent): number => Number(event.kv?.mod_revision ?? '0');

const describeCreate = (c: WatchCreate): string => `${c.key.toString()} from ${c.start_revision ?? 'now'}${c.prev_kv === true ? ' with prev_kv' : ''}`;

interface Tracked {
  readonly stream: WatchClient;
  readonly id: number;
  readonly create: WatchCreate;
  cancelled: boolean;
}

describe('a relayed watch through its member dropping the connections', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  const streams: WatchClient[] = [];

  /** A write straight to etcd, tried until etcd (just restarted) takes it. */
  const put = async (key: string, value: string): Promise<number> => {
    let revision = 0;
    await until(`etcd to take a put of ${key}`, async () => {
      const outcome = await call<{ header?: { revision?: string } }>(direct.kv, 'Put', { key: b(key), value: b(value) }, { deadlineMs: 2_000 });
      revision = Number(outcome.response?.header?.revision ?? '0');
      return outcome.error === null;
    });
    return revision;
  };
  const remove = async (key: string): Promise<void> => {
    await until(`etcd to take a delete of ${key}`, async () => (await call(direct.kv, 'DeleteRange', { key: b(key) }, { deadlineMs: 2_000 })).error === null);
  };
  /** SIGKILL and restart on the same data dir: every connection the proxy had to etcd drops. */
  const bounce = async (): Promise<void> => {
    etcd.signal('SIGKILL');
    await until('etcd to exit', () => !etcd.running());
    await etcd.restart();
  };

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    await put('/a/seed', 'mirrored');
    await put('/b/seed', 'relayed');
    proxy = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', '/a/']);
    await proxy.mirrored();
  });
  after(async () => {
    streams.forEach((s) => s.close());
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('keeps 100 relayed watches, created and cancelled across three drops, each with etcd history once, no gap', async () => {
    for (let i = 0; i < 4; i += 1) streams.push(new WatchClient(proxy.address, { ownConnection: i % 2 === 0 }));
    // Four kinds of relayed watch: outside the mirror from revision 1 and from now, with prev_kv;
    // inside the mirror from revision 1 (below its log).
    const kinds: WatchCreate[] = [
      { ...prefix('/b/'), start_revision: 1 },
      { ...prefix('/b/') },
      { ...prefix('/b/'), start_revision: 1, prev_kv: true },
      { ...prefix('/a/'), start_revision: 1 },
    ];
    const tracked: Tracked[] = [];
    let nextId = 1;
    const open = async (count: number, which: (n: number) => WatchCreate): Promise<Tracked[]> => {
      const made: Tracked[] = [];
      for (let n = 0; n < count; n += 1) {
        const stream = streams[n % streams.length] as WatchClient;
        const create = { ...which(n), watch_id: nextId };
        nextId += 1;
        stream.create(create);
        made.push({ stream, id: create.watch_id, create, cancelled: false });
      }
      tracked.push(...made);
      return made;
    };
    const createdOf = (t: Tracked): WireWatchResponse | undefined => t.stream.responses.find((r) => r.created === true && r.watch_id === String(t.id));
    const cancelOf = (t: Tracked): WireWatchResponse | undefined => t.stream.responses.find((r) => r.canceled === true && r.watch_id === String(t.id));
    const waitCreated = async (made: readonly Tracked[]): Promise<void> => {
      await until(`${made.length} answers to creates`, () => made.every((t) => createdOf(t) !== undefined || cancelOf(t) !== undefined), 30_000);
      for (const t of made) assert.equal(cancelOf(t), undefined, `watch ${t.id} (${describeCreate(t.create)}) created, not cancelled`);
    };

    const first = await open(70, (n) => kinds[n % kinds.length] as WatchCreate);
    await waitCreated(first);
    let value = 0;
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 5; i += 1) {
        value += 1;
        await put(`/b/k${i}`, `v${value}`);
        await put(`/a/k${i}`, `v${value}`);
      }
      await remove('/b/k0');
      // Created and cancelled while etcd is down: the creates wait for etcd, the cancels are answered at once.
      etcd.signal('SIGKILL');
      await until('etcd to exit', () => !etcd.running());
      const during = await open(10, (n) => kinds[n % 3] as WatchCreate);
      for (const t of tracked.filter((w) => !w.cancelled).slice(round * 3, round * 3 + 3)) {
        t.stream.cancel(t.id);
        t.cancelled = true;
      }
      await etcd.restart();
      await waitCreated(during);
    }
    await bounce();
    const endRevision = await put('/b/end', 'x');
    await put('/a/end', 'x');

    // etcd's own history of both ranges, from revision 1 (straight from etcd).
    const history = new WatchClient(etcd.clientAddress);
    streams.push(history);
    await history.createAll([
      { ...prefix('/b/'), start_revision: 1, prev_kv: true, watch_id: 1 },
      { ...prefix('/a/'), start_revision: 1, watch_id: 2 },
    ]);
    const historyOf = (id: string): WireEvent[] => history.responses.filter((r) => r.watch_id === id).flatMap((r) => r.events ?? []);
    await history.until('the end of the history', () => historyOf('1').some((e) => e.kv?.key?.toString() === '/b/end') && historyOf('2').some((e) => e.kv?.key?.toString() === '/a/end'));

    const live = tracked.filter((t) => !t.cancelled);
    assert.equal(tracked.length, 100);
    const eventsOf = (t: Tracked): WireEvent[] => t.stream.responses.filter((r) => r.watch_id === String(t.id)).flatMap((r) => r.events ?? []);
    const expected = (t: Tracked): string[] => {
      const isA = t.create.key.toString() === '/a/';
      const all = historyOf(isA ? '2' : '1');
      const start = t.create.start_revision ?? Number(createdOf(t)?.header?.revision ?? '0') + 1;
      return all.filter((e) => modRevision(e) >= start).map((e) => text(t.create.prev_kv === true ? e : { ...e, prev_kv: undefined }));
    };
    await until(
      'every live watch to see the end',
      () => live.every((t) => eventsOf(t).some((e) => modRevision(e) >= endRevision)),
      30_000,
    );
    for (const stream of streams) assert.equal(stream.ended, null, 'no client stream ended');
    for (const t of tracked) {
      const cancels = t.stream.responses.filter((r) => r.watch_id === String(t.id) && r.canceled === true);
      if (!t.cancelled) assert.deepEqual(cancels, [], `watch ${t.id} (${describeCreate(t.create)}) was not cancelled`);
      const seen = eventsOf(t).map(text);
      const want = expected(t);
      // A live watch sees all of etcd's history for it, once; a cancelled one a prefix of it.
      if (!t.cancelled) assert.deepEqual(seen, want, `watch ${t.id} saw etcd's history once, in order`);
      else assert.deepEqual(seen, want.slice(0, seen.length), `cancelled watch ${t.id} saw a prefix of etcd's history`);
    }
  });
});
