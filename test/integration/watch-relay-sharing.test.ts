// Integration (real etcd, raw grpc-js Watch streams): watches the mirror
// cannot serve (keys outside --mirror-prefix) are relayed to etcd, and
// identical ones share one upstream watch, whichever client stream they come
// from. etcd's own /metrics count what it holds; every relayed watch must get
// exactly what a watch opened on etcd itself gets (differential), including
// watches that join a shared one late, from now or from a past revision,
// fragmented responses, and watches whose options or require-leader metadata
// differ (those must not share).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { sleep, startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient, type WatchCreate, type WireEvent, type WireWatchResponse } from '../support/watch-client';
import { until as waitFor } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const prefix = (p: string): { key: Buffer; range_end: Buffer } => ({ key: b(p), range_end: b(`${p.slice(0, -1)}${String.fromCharCode(p.charCodeAt(p.length - 1) + 1)}`) });

const WATCHERS = 'etcd_debugging_mvcc_watcher_total';
const STREAMS = 'etcd_debugging_mvcc_watch_stream_total';

async function etcdGauge(etcd: EtcdServer, name: string): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`etcd exports no ${name}`);
  return Number(line.split(' ')[1]);
}

/** An event as comparable text; large values by length and digest. */
function describeEvent(event: WireEvent): string {
  const kv = (label: string, k: WireEvent['kv']): string => {
    const value = k?.value ?? Buffer.alloc(0);
    const shown = value.length > 64 ? `${value.length}b:${createHash('sha1').update(value).digest('hex')}` : value.toString();
    return `${label}${k?.key?.toString()}=${shown} c${k?.create_revision ?? 0} m${k?.mod_revision ?? 0} v${k?.version ?? 0}`;
  };
  return `${event.type ?? 'PUT'} ${kv('', event.kv)}${event.prev_kv === undefined ? '' : ` | ${kv('prev ', event.prev_kv)}`}`;
}

/** A watch's event responses as etcd shaped them: events per message and fragment marks. */
function shape(responses: readonly WireWatchResponse[], watchId: string): string[] {
  return responses
    .filter((r) => (r.watch_id ?? '0') === watchId && (r.events?.length ?? 0) > 0)
    .map((r) => `${r.fragment === true ? 'fragment ' : ''}[${(r.events ?? []).map(describeEvent).join(', ')}]`);
}

function events(responses: readonly WireWatchResponse[], watchId: string): WireEvent[] {
  return responses.filter((r) => (r.watch_id ?? '0') === watchId).flatMap((r) => r.events ?? []);
}

describe('relayed watches', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  /** What etcd holds for the proxy's mirror alone; every test leaves etcd so. */
  let idle: { watchers: number; streams: number };
  const clients: WatchClient[] = [];
  const open = (address: string, options: ConstructorParameters<typeof WatchClient>[1] = {}): WatchClient => {
    const client = new WatchClient(address, options);
    clients.push(client);
    return client;
  };
  const gauges = async (): Promise<{ watchers: number; streams: number }> => ({ watchers: await etcdGauge(etcd, WATCHERS), streams: await etcdGauge(etcd, STREAMS) });
  const relayedWatches = async (): Promise<number> => (await proxy.metrics.upstreamRelayedWatches.get()).values[0]?.value ?? 0;
  const put = async (key: string, value: string | Buffer): Promise<number> => {
    const outcome = await call<{ header?: { revision?: string } }>(direct.kv, 'Put', { key: b(key), value: typeof value === 'string' ? b(value) : value });
    assert.equal(outcome.error, null, `put ${key}`);
    return Number(outcome.response?.header?.revision);
  };
  const remove = async (key: string): Promise<number> => {
    const outcome = await call<{ header?: { revision?: string } }>(direct.kv, 'DeleteRange', { key: b(key) });
    assert.equal(outcome.error, null, `delete ${key}`);
    return Number(outcome.response?.header?.revision);
  };
  /** Closes the given streams and waits until etcd holds no more than it did at `baseline` (the last cancel ends the upstream watch). */
  const closeAndSettle = async (streams: readonly WatchClient[], baseline: { watchers: number; streams: number }): Promise<void> => {
    for (const stream of streams) {
      stream.close();
      const index = clients.indexOf(stream);
      if (index >= 0) clients.splice(index, 1);
    }
    await waitFor('etcd to drop the relayed watches and their stream', async () => {
      const now = await gauges();
      return now.watchers === baseline.watchers && now.streams === baseline.streams;
    });
    assert.equal(await relayedWatches(), 0);
  };
  /** Closes what a test left open (its watches straight on etcd) and waits until etcd holds only the mirror's watch. */
  const settle = (): Promise<void> => closeAndSettle([...clients], idle);

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    await put('/a/seed', 'mirrored');
    proxy = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', '/a/']);
    await proxy.mirrored();
    // The mirror lists before it watches: the baseline is taken once etcd holds the mirror's own watch and stream.
    await waitFor("etcd to hold the mirror's watch", async () => {
      const held = await gauges();
      return (await proxy.metrics.upstreamWatchStreams.get()).values[0]?.value === 1 && held.watchers >= 1 && held.streams >= 1;
    });
    idle = await gauges();
  });
  // A failed test's leftovers must not skew the next one's counts.
  afterEach(() => {
    clients.forEach((c) => c.close());
    clients.length = 0;
  });
  after(async () => {
    clients.forEach((c) => c.close());
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('shares one upstream watch among 200 identical watchers on 8 streams, each getting every write once, as etcd sends it', async () => {
    const baseline = await gauges();
    const streams = Array.from({ length: 8 }, (_, i) => open(proxy.address, { ownConnection: i % 2 === 0 }));
    const ids = await Promise.all(
      streams.map(async (stream) => {
        const created = await stream.createAll(Array.from({ length: 25 }, () => prefix('/outside/')));
        assert.ok(created.every((r) => r.canceled !== true));
        return created.map((r) => r.watch_id ?? '0');
      }),
    );
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 1, streams: baseline.streams + 1 }, 'etcd holds one watch for the 200');
    assert.equal(await relayedWatches(), 1);

    const reference = open(etcd.clientAddress);
    await reference.createAll([prefix('/outside/')]);
    for (let i = 0; i < 10; i += 1) await put(`/outside/k${i % 4}`, `v${i}`);
    await remove('/outside/k1');
    const txn = await call(direct.kv, 'Txn', {
      success: [{ request_put: { key: b('/outside/t1'), value: b('x') } }, { request_put: { key: b('/outside/t2'), value: b('y') } }],
    });
    assert.equal(txn.error, null);
    await put('/a/inside', 'mirrored'); // a mirrored key: not in the watched range
    await put('/outsidf', 'next to the range');
    await put('/outside/last', 'end');
    const expected = 14;
    await reference.until('the reference watch to get every write', () => events(reference.responses, '0').length >= expected);
    const want = shape(reference.responses, '0');
    assert.equal(events(reference.responses, '0').length, expected);
    await Promise.all(streams.map((s) => s.until('every watch to get every write', () => s.responses.flatMap((r) => r.events ?? []).length >= 25 * expected, 15_000)));
    await Promise.all(streams.map((s) => s.quiet(300)));
    streams.forEach((stream, i) => {
      for (const id of ids[i] ?? []) assert.deepEqual(shape(stream.responses, id), want, `stream ${i} watch ${id}`);
    });
    await closeAndSettle(streams, { watchers: baseline.watchers + 1, streams: baseline.streams + 1 });
    await settle();
  });

  it('lets watches from now join while writes go on, each getting exactly the events after its created revision', async () => {
    const baseline = await gauges();
    const reference = open(etcd.clientAddress);
    await reference.createAll([prefix('/late/')]);
    const first = open(proxy.address);
    await first.createAll([prefix('/late/')]);
    const late = Array.from({ length: 6 }, () => open(proxy.address));
    const createdAt: number[] = [];
    let lastWrite = 0;
    const writer = (async () => {
      for (let i = 0; i < 40; i += 1) {
        lastWrite = await put(`/late/k${i % 5}`, `v${i}`);
        await sleep(10);
      }
    })();
    for (const stream of late) {
      await sleep(40);
      const [created] = await stream.createAll([prefix('/late/')]);
      assert.notEqual(created?.canceled, true);
      createdAt.push(Number(created?.header?.revision));
    }
    await writer;
    // Joined: still one upstream watch for the proxy's watches (plus the reference watch).
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 2, streams: baseline.streams + 2 });
    const next = await put('/late/after', 'the next write');
    await reference.until('the reference to see every write', () => events(reference.responses, '0').some((e) => Number(e.kv?.mod_revision) === next));
    const all = events(reference.responses, '0');
    assert.equal(all.length, 41);
    for (const [i, stream] of [first, ...late].entries()) {
      await stream.until(`watch ${i} to get the last write`, () => events(stream.responses, '0').some((e) => Number(e.kv?.mod_revision) === next));
    }
    await Promise.all([first, ...late].map((s) => s.quiet(200)));
    assert.deepEqual(events(first.responses, '0').map(describeEvent), all.map(describeEvent));
    late.forEach((stream, i) => {
      const at = createdAt[i] ?? 0;
      assert.ok(at > 0 && at <= next, `created revision ${at}`);
      const got = events(stream.responses, '0');
      assert.ok(
        got.every((e) => Number(e.kv?.mod_revision) > at),
        `late watch ${i} created at ${at} got an event at or below it`,
      );
      assert.deepEqual(
        got.map(describeEvent),
        all.filter((e) => Number(e.kv?.mod_revision) > at).map(describeEvent),
        `late watch ${i} (created at ${at}, writes until ${lastWrite})`,
      );
    });

    // A start revision the shared watch has passed: its own upstream watch, replaying what etcd replays.
    const firstRevision = Number(all[0]?.kv?.mod_revision);
    const replayReference = open(etcd.clientAddress);
    await replayReference.createAll([{ ...prefix('/late/'), start_revision: firstRevision + 3 }]);
    const replay = open(proxy.address);
    await replay.createAll([{ ...prefix('/late/'), start_revision: firstRevision + 3 }]);
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 4, streams: baseline.streams + 3 }, 'a second upstream watch, on the same relay stream');
    // A start revision nothing has passed yet (list, then watch from the next revision): it joins.
    const listThenWatch = open(proxy.address);
    const [joined] = await listThenWatch.createAll([{ ...prefix('/late/'), start_revision: next + 1 }]);
    assert.notEqual(joined?.canceled, true);
    assert.equal((await gauges()).watchers, baseline.watchers + 4);
    const final = await put('/late/final', 'one more');
    for (const stream of [replayReference, replay, listThenWatch]) {
      await stream.until('the final write', () => events(stream.responses, '0').some((e) => Number(e.kv?.mod_revision) === final));
    }
    await Promise.all([replay, listThenWatch].map((s) => s.quiet(200)));
    // The replay comes as etcd grouped it; the final write, made while both watches were live, may
    // join the tail of a replay on one and not on the other (etcd batches whatever is ready), so it
    // is compared as an event, not as a message.
    const withoutFinal = (responses: readonly WireWatchResponse[]): WireWatchResponse[] =>
      responses.map((r) => ({ ...r, events: (r.events ?? []).filter((e) => Number(e.kv?.mod_revision) !== final) }));
    assert.deepEqual(shape(withoutFinal(replay.responses), '0'), shape(withoutFinal(replayReference.responses), '0'));
    assert.deepEqual(events(replay.responses, '0').map(describeEvent), events(replayReference.responses, '0').map(describeEvent));
    assert.deepEqual(
      events(listThenWatch.responses, '0').map(describeEvent),
      events(replayReference.responses, '0')
        .filter((e) => Number(e.kv?.mod_revision) > next)
        .map(describeEvent),
    );
    await closeAndSettle([first, ...late, replay, listThenWatch], { watchers: baseline.watchers + 2, streams: baseline.streams + 2 });
    await settle();
  });

  it('keeps watches with other options apart, and ends the upstream watch with its last member', async () => {
    const variants: WatchCreate[] = [
      prefix('/opts/'),
      { ...prefix('/opts/'), prev_kv: true },
      { ...prefix('/opts/'), filters: ['NOPUT'] },
      { ...prefix('/opts/'), filters: ['NODELETE'], prev_kv: true },
    ];
    const references = open(etcd.clientAddress);
    await references.createAll(variants);
    const baseline = await gauges();
    const stream = open(proxy.address);
    const other = open(proxy.address);
    // Watches 0-2 of `stream` and 0 of `other` are identical; the rest differ from them and from each other.
    const created = await stream.createAll([variants[0], variants[0], variants[0], ...variants.slice(1)] as WatchCreate[]);
    await other.createAll([variants[0] as WatchCreate]);
    const id = (n: number): string => created[n]?.watch_id ?? '0';
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 4, streams: baseline.streams + 1 });
    assert.equal(await relayedWatches(), 4);

    /** Two puts and a delete; returns the delete's revision (the put before it is the last a NODELETE watch gets). */
    const writeRound = async (n: number): Promise<number> => {
      await put('/opts/k', `a${n}`);
      await put('/opts/k', `b${n}`);
      return remove('/opts/k');
    };
    /** Waits for the last event of a round that a watch gets (`noDelete`: the put before the delete). */
    const reached = (client: WatchClient, watchId: string, deleted: number, noDelete = false): Promise<void> => {
      const revision = noDelete ? deleted - 1 : deleted;
      return client.until(`watch ${watchId} to reach ${revision}`, () => events(client.responses, watchId).some((e) => Number(e.kv?.mod_revision) === revision));
    };
    let last = await writeRound(1);
    await Promise.all(['0', '1', '2', '3'].map((w) => reached(references, w, last, w === '3')));
    await Promise.all([0, 1, 2, 3, 4, 5].map((n) => reached(stream, id(n), last, n === 5)));
    await stream.quiet(200);
    const expect = (n: number, reference: string, note: string): void =>
      assert.deepEqual(shape(stream.responses, id(n)), shape(references.responses, reference), `watch ${n}: ${note}`);
    [0, 1, 2].forEach((n) => expect(n, '0', 'plain'));
    expect(3, '1', 'prev_kv');
    expect(4, '2', 'NOPUT');
    expect(5, '3', 'NODELETE with prev_kv');

    // One member leaves: the others stay live, and etcd still holds the same watches.
    stream.cancel(id(0));
    await stream.next('the cancel', (r) => r.canceled === true && r.watch_id === id(0));
    last = await writeRound(2);
    await Promise.all([1, 2, 3, 4, 5].map((n) => reached(stream, id(n), last, n === 5)));
    await reached(other, '0', last);
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 4, streams: baseline.streams + 1 });
    assert.ok(
      events(stream.responses, id(0)).every((e) => Number(e.kv?.mod_revision) < last - 2),
      'a cancelled member gets nothing more',
    );

    // The last members leave: etcd drops that upstream watch, the other options' watches stay.
    stream.cancel(id(1));
    stream.cancel(id(2));
    other.close();
    await waitFor('etcd to drop the shared plain watch', async () => (await gauges()).watchers === baseline.watchers + 3);
    last = await writeRound(3);
    await Promise.all([3, 4, 5].map((n) => reached(stream, id(n), last, n === 5)));
    await closeAndSettle([stream], baseline);
    await settle();
  });

  it('does not share an upstream stream between require-leader and plain watches', async () => {
    const baseline = await gauges();
    const plain = [open(proxy.address), open(proxy.address)];
    const leader = [open(proxy.address, { metadata: { hasleader: 'true' } }), open(proxy.address, { metadata: { hasleader: 'true' } })];
    for (const client of [...plain, ...leader]) await client.createAll([prefix('/rl/')]);
    // The third stream is the proxy's own require-leader sentinel (no watch on it), held while require-leader streams are open.
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 2, streams: baseline.streams + 3 }, 'one watch per kind, each on its own stream');
    const revision = await put('/rl/k', 'v');
    for (const client of [...plain, ...leader]) {
      await client.until('the write', () => events(client.responses, '0').some((e) => Number(e.kv?.mod_revision) === revision));
    }
    await closeAndSettle([...plain, ...leader], baseline);
    await settle();
  });

  it('hands fragmented responses to every member whole and in order, as etcd fragments them', async () => {
    const big = (n: number): Buffer => Buffer.alloc(1024 * 1024, String(n));
    const revisions = [await put('/big/1', big(1)), await put('/big/2', big(2)), await put('/big/3', big(3))];
    const [r1, r2] = revisions as [number, number, number];
    const requests: WatchCreate[] = [
      { ...prefix('/big/'), start_revision: r1, fragment: true },
      { ...prefix('/big/'), start_revision: r1, fragment: true },
      // Joins the same upstream watch but starts inside its catch-up batch: the subset, fragmented as etcd would.
      { ...prefix('/big/'), start_revision: r2, fragment: true },
    ];
    const references = open(etcd.clientAddress);
    await references.createAll([requests[0], requests[2]] as WatchCreate[]);
    const baseline = await gauges();
    const stream = open(proxy.address);
    const created = await stream.createAll(requests);
    assert.deepEqual(await gauges(), { watchers: baseline.watchers + 1, streams: baseline.streams + 1 });
    const ids = created.map((r) => r.watch_id ?? '0');
    const want = [3, 3, 2];
    await references.until('the replays', () => events(references.responses, '0').length >= 3 && events(references.responses, '1').length >= 2, 15_000);
    await stream.until('the replays', () => ids.every((id, i) => events(stream.responses, id).length >= (want[i] ?? 0)), 15_000);
    await stream.quiet(300);
    const fromEtcd = shape(references.responses, '0');
    assert.ok(
      fromEtcd.filter((s) => s.startsWith('fragment ')).length >= 1,
      `etcd fragmented the replay: ${fromEtcd.map((s) => s.slice(0, 40)).join(' ; ')}`,
    );
    assert.deepEqual(shape(stream.responses, ids[0] ?? ''), fromEtcd);
    assert.deepEqual(shape(stream.responses, ids[1] ?? ''), fromEtcd);
    assert.deepEqual(shape(stream.responses, ids[2] ?? ''), shape(references.responses, '1'));
    await closeAndSettle([stream], baseline);
    await settle();
  });
});
