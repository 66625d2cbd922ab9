// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (two real etcds, raw grpc-js Watch streams): the same watch
// requests and the same writes, sent to one fresh etcd directly (side A) and
// to another fresh etcd through the proxy (side B), produce the same watch
// responses once what must differ between two clusters is normalised.
//
// What is normalised, and why:
// * header.cluster_id, member_id, raft_term: two clusters, two identities.
//   header.revision is NOT normalised: both clusters receive identical writes
//   from the same start, so every revision number must match, including the
//   header of `created`, `canceled` and progress answers.
// * Grouping of events into responses, for watches without `fragment`: etcd
//   sends live events one response per revision but batches a replay (up to
//   1000 revisions per response), and whether a given revision reaches a
//   watcher live or in a batch depends on timing inside etcd (a watcher that
//   falls behind is resynced in batches) and, through the proxy, on how the
//   mirror received it. Clients must accept both. So consecutive event
//   responses of one watch are merged: the events are compared in order, one
//   by one, and the merged run keeps the header revision of its last response
//   (the newest revision the run speaks for, equal whatever the grouping).
//   For watches created with `fragment`, grouping IS the behaviour under test
//   and is compared response by response, fragment flags included.
// * Interleaving of different watches on one stream: etcd notifies the
//   watchers of a revision in map order (random), so responses are compared
//   per watch ID; the order of `created` answers across the stream is compared
//   on its own, since clients pair them with their create requests by order.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { sleep, startEtcd, type EtcdServer } from '../support/etcd';
import { untilValue } from '../support/until';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { FRAGMENT_LIMIT_BYTES } from '../../src/watch/fragment';
import { call, rawClients, type RawClients, type UnaryOutcome } from '../support/raw-client';
import { eventsOf, WatchClient, type WatchCreate, type WireEvent, type WireKeyValue, type WireWatchResponse } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const ZERO = Buffer.from([0]);
const PREFIX = { key: b('k/'), range_end: b('k0') };
/** Under etcd's default 1.5 MiB request limit, so one Put carries it; three of them pass etcd's 2 MiB fragment size. */
const LARGE = 1400 * 1024;
/** Long enough for etcd's 100 ms resync of unsynced watchers and the proxy's fan-out to have happened. */
const QUIET_MS = 400;

type Op =
  | { put: string; value: string | Buffer }
  | { del: string; end?: Buffer }
  | { txn: { compare: object[]; success: object[]; failure?: object[] } }
  | { compact: 'last' };

/** One path to one cluster: writes and watches go the same way (straight to etcd, or through the proxy). */
class Side {
  readonly kv: RawClients;
  private readonly streams: WatchClient[] = [];

  constructor(
    readonly name: string,
    readonly address: string,
    /** Resolves once this side has everything up to a revision ready to serve. */
    private readonly settle: (revision: number) => Promise<void>,
  ) {
    this.kv = rawClients(address);
  }

  open(): WatchClient {
    const stream = new WatchClient(this.address);
    this.streams.push(stream);
    return stream;
  }

  /** Applies the writes in order; returns the revision after each (asserted equal across sides by the caller). */
  async apply(ops: readonly Op[]): Promise<number[]> {
    const revisions: number[] = [];
    for (const op of ops) {
      const outcome = await this.send(op, revisions.at(-1));
      assert.equal(outcome.error, null, `${this.name}: ${JSON.stringify(op).slice(0, 200)}: ${outcome.error?.details}`);
      revisions.push(Number(outcome.response?.header?.revision ?? (await this.revision())));
    }
    await this.settle(revisions.at(-1) ?? 0);
    return revisions;
  }

  /**
   * One write. On a machine starved by parallel test files the proxy may
   * declare etcd lost for a moment (no answer within --upstream-timeout) and
   * refuse writes; such a refusal is made before anything is sent upstream,
   * so it is retried: this file tests watches, not the liveness detector.
   */
  private async send(op: Op, lastRevision: number | undefined): Promise<UnaryOutcome<{ header?: { revision?: string } }>> {
    return untilValue(
      () => `${JSON.stringify(op).slice(0, 200)} on ${this.name} answered, not refused as a write`,
      async () => {
        let outcome: UnaryOutcome<{ header?: { revision?: string } }>;
        if ('put' in op) outcome = await call(this.kv.kv, 'Put', { key: b(op.put), value: typeof op.value === 'string' ? b(op.value) : op.value });
        else if ('del' in op) outcome = await call(this.kv.kv, 'DeleteRange', { key: b(op.del), ...(op.end === undefined ? {} : { range_end: op.end }) });
        else if ('txn' in op) outcome = await call(this.kv.kv, 'Txn', op.txn);
        else outcome = await call(this.kv.kv, 'Compact', { revision: String(lastRevision ?? (await this.revision())), physical: true });
        const refused = outcome.error?.code === status.UNAVAILABLE && outcome.error.details.includes('writes rejected');
        return refused ? undefined : outcome;
      },
      15_000,
      200,
    );
  }

  async revision(): Promise<number> {
    const outcome = await call<{ header?: { revision?: string } }>(this.kv.kv, 'Range', { key: b('any') });
    return Number(outcome.response?.header?.revision);
  }

  close(): void {
    for (const stream of this.streams) stream.close();
    this.kv.close();
  }
}

// ---- normalising ----

interface Item {
  /** 'events' for a merged run of event responses; otherwise the response itself, normalised. */
  readonly kind: 'events' | 'response';
  readonly value: unknown;
}

function header(response: WireWatchResponse): { revision?: string } {
  return response.header?.revision === undefined ? {} : { revision: response.header.revision };
}

function keyValue(kv: WireKeyValue | undefined): object | null {
  if (kv === undefined) return null;
  return {
    key: kv.key ?? Buffer.alloc(0),
    create_revision: kv.create_revision ?? '0',
    mod_revision: kv.mod_revision ?? '0',
    version: kv.version ?? '0',
    value: kv.value ?? Buffer.alloc(0),
    lease: kv.lease ?? '0',
  };
}

function event(e: WireEvent): object {
  return { type: e.type ?? 'PUT', kv: keyValue(e.kv), prev_kv: keyValue(e.prev_kv) };
}

/**
 * The response with proto3 defaults made explicit: a decoder cannot tell an
 * absent field from one encoded with its default value (etcd omits
 * `watch_id: 0`, an encoder may write it), so both read the same here.
 */
function normalised(response: WireWatchResponse): object {
  return {
    header: header(response),
    watch_id: response.watch_id ?? '0',
    created: response.created ?? false,
    canceled: response.canceled ?? false,
    compact_revision: response.compact_revision ?? '0',
    cancel_reason: response.cancel_reason ?? '',
    fragment: response.fragment ?? false,
    events: (response.events ?? []).map(event),
  };
}

/** What a response's keys and values weigh, near enough to tell whether etcd had to fragment it. */
const responseBytes = (r: WireWatchResponse): number =>
  (r.events ?? []).reduce((sum, e) => sum + (e.kv?.key?.length ?? 0) + (e.kv?.value?.length ?? 0) + (e.prev_kv?.key?.length ?? 0) + (e.prev_kv?.value?.length ?? 0), 0);
const isEventResponse = (r: WireWatchResponse): boolean => (r.events?.length ?? 0) > 0 && r.created !== true && r.canceled !== true;

/** Per watch ID, what the watch received, with the grouping rules of the file comment applied. */
function transcript(responses: readonly WireWatchResponse[], keepGrouping: ReadonlySet<string> = new Set()): Map<string, Item[]> {
  const byId = new Map<string, Item[]>();
  for (const response of responses) {
    const id = response.watch_id ?? '0';
    const items = byId.get(id) ?? [];
    byId.set(id, items);
    const last = items.at(-1);
    if (isEventResponse(response) && !keepGrouping.has(id)) {
      const events = (response.events ?? []).map(event);
      if (last?.kind === 'events') {
        const run = last.value as { header: object; events: object[] };
        items[items.length - 1] = { kind: 'events', value: { header: header(response), events: [...run.events, ...events] } };
      } else {
        items.push({ kind: 'events', value: { header: header(response), events } });
      }
    } else {
      items.push({ kind: 'response', value: normalised(response) });
    }
  }
  return byId;
}

/** The `created` answers in stream order: clients pair them with their creates by position. */
function createdOrder(responses: readonly WireWatchResponse[]): object[] {
  return responses.filter((r) => r.created === true).map(normalised);
}

/** A readable rendering of Buffers for assertion messages and debugging. */
function show(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer') {
      const bytes = Buffer.from((v as { data: number[] }).data);
      return bytes.length > 64 ? `<${bytes.length} bytes>` : bytes.toString('latin1');
    }
    return v;
  });
}

/** Checks a side on its own: within one watch, event revisions never go back, and no event is newer than its header. */
function assertWellFormed(side: string, responses: readonly WireWatchResponse[]): void {
  const lastRevision = new Map<string, number>();
  for (const response of responses) {
    const id = response.watch_id ?? '0';
    for (const e of response.events ?? []) {
      const revision = Number(e.kv?.mod_revision);
      assert.ok(revision >= (lastRevision.get(id) ?? 0), `${side}: watch ${id} went back to revision ${revision}`);
      assert.ok(revision <= Number(response.header?.revision), `${side}: watch ${id} event ${revision} newer than header ${response.header?.revision}`);
      lastRevision.set(id, revision);
    }
  }
}

/** Compares everything before failing, so one run names every difference. */
function assertSameStreams(label: string, direct: readonly WireWatchResponse[], proxied: readonly WireWatchResponse[], keepGrouping: ReadonlySet<string> = new Set()): void {
  assertWellFormed(`${label} (etcd)`, direct);
  assertWellFormed(`${label} (proxy)`, proxied);
  const differences: string[] = [];
  const differ = (what: string, fromProxy: unknown, fromEtcd: unknown): void => {
    const [p, e] = [show(fromProxy), show(fromEtcd)];
    if (p !== e) differences.push(`${what}:\n  etcd:  ${e.slice(0, 3000)}\n  proxy: ${p.slice(0, 3000)}`);
  };
  const order = (responses: readonly WireWatchResponse[]): string[] =>
    createdOrder(responses).map((r) => {
      const { watch_id, canceled, cancel_reason, header: h } = r as { watch_id: string; canceled: boolean; cancel_reason: string; header: { revision?: string } };
      return `${watch_id}@${h.revision ?? '-'}${canceled ? ` canceled: ${cancel_reason}` : ''}`;
    });
  differ('created answers, in stream order', order(proxied), order(direct));
  const [fromEtcd, fromProxy] = [transcript(direct, keepGrouping), transcript(proxied, keepGrouping)];
  differ('watch IDs that received anything', [...fromProxy.keys()].sort(), [...fromEtcd.keys()].sort());
  for (const [id, items] of fromEtcd) differ(`watch ${id}`, fromProxy.get(id), items);
  assert.deepEqual(differences, [], `${label}: the proxy's answers differ from etcd's`);
}

/** Runs the same script on both sides at once and returns what each side's streams received. */
async function both<T>(sides: readonly [Side, Side], script: (side: Side) => Promise<T>): Promise<[T, T]> {
  const [a, c] = await Promise.all([script(sides[0]), script(sides[1])]);
  return [a, c];
}

describe('Watch through the proxy matches etcd (differential)', () => {
  let etcdA: EtcdServer;
  let etcdB: EtcdServer;
  let proxy: TestProxy;
  let sides: [Side, Side];

  before(async () => {
    [etcdA, etcdB] = await Promise.all([startEtcd({ name: 'direct' }), startEtcd({ name: 'behind' })]);
    proxy = await startTestProxy([etcdB.clientUrl]);
    await proxy.mirrored();
    sides = [new Side('etcd', etcdA.clientAddress, async () => undefined), new Side('proxy', proxy.address, (revision) => proxy.mirrored(revision))];
  });
  after(async () => {
    sides?.forEach((side) => side.close());
    await proxy?.stop();
    await Promise.all([etcdA?.stop(), etcdB?.stop()]);
  });

  /** Applies writes on both sides and checks that both clusters moved through the same revisions. */
  async function write(ops: readonly Op[]): Promise<number[]> {
    const [a, c] = await both(sides, (side) => side.apply(ops));
    assert.deepEqual(c, a, 'both clusters must be at the same revisions (the differential depends on it)');
    return a;
  }

  it('live watches created before the writes: keys, ranges, filters, prev_kv, IDs, multiplexing, cancel, progress', async () => {
    // Creates pipelined on one stream. Auto IDs are 0..6 for the first seven;
    // 100 and 8 are the client's; 7 and 9 show auto IDs skipping the client's 8.
    const creates: WatchCreate[] = [
      { key: b('k/a') }, // 0: one key
      { ...PREFIX }, // 1: a prefix
      { key: b('k/m'), range_end: ZERO }, // 2: every key from k/m on
      { key: ZERO, range_end: ZERO }, // 3: every key
      { ...PREFIX, filters: ['NOPUT'] }, // 4
      { ...PREFIX, filters: ['NODELETE'] }, // 5
      { ...PREFIX, prev_kv: true }, // 6
      { ...PREFIX, watch_id: 100 }, // client-chosen
      { key: b('k/a'), watch_id: 100 }, // duplicate ID on the same stream
      { key: b('k/z'), range_end: b('k/a') }, // empty range: end before key
      { key: b('k/a'), range_end: b('k/a') }, // empty range: end equal to key
      { key: b('k/b'), watch_id: 8 },
      { key: b('k/c') }, // auto: 7
      { ...PREFIX, prev_kv: true, filters: ['NOPUT'] }, // auto: 9, skipping the client's 8
      { key: b('other/x') }, // 10
      { ...PREFIX, start_revision: 6 }, // 11: a start in the future: only revisions >= 6
      { ...PREFIX, progress_notify: true }, // 12: etcd's interval is 10 min: nothing extra expected here
      { key: b(''), range_end: b('') }, // 13: an empty key is "\0", the smallest key
    ];
    const streams = await both(sides, async (side) => {
      const live = side.open();
      await live.createAll(creates);
      // Many watches on one stream, on overlapping keys.
      const many = side.open();
      await many.createAll(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? { key: b(`k/${String.fromCharCode(97 + (i % 5))}`) } : { ...PREFIX, prev_kv: i % 3 === 0 })));
      return { live, many };
    });
    await write([
      { put: 'k/a', value: '1' },
      { put: 'k/b', value: '2' },
      { put: 'k/a', value: '3' },
      { put: 'other/x', value: 'o' },
      {
        txn: {
          compare: [{ target: 'VALUE', result: 'EQUAL', key: b('k/a'), value: b('3') }],
          success: [{ request_put: { key: b('k/c'), value: b('4') } }, { request_put: { key: b('k/d'), value: b('5') } }, { request_delete_range: { key: b('k/b') } }],
        },
      },
      { del: 'k/a' },
      { put: 'k/m1', value: '6' },
      { put: 'k/z', value: '7' },
      { del: 'k/', end: b('k0') }, // a prefix delete: several delete events in one revision
      { put: 'k/a', value: '8' }, // created again: version 1, no prev_kv
      { put: 'zzz', value: '9' },
      { del: 'k/none' }, // deletes nothing: no revision, no event
      {
        txn: {
          compare: [{ target: 'VERSION', result: 'GREATER', key: b('k/a'), version: '5' }],
          success: [{ request_put: { key: b('k/wrong'), value: b('x') } }],
          failure: [{ request_put: { key: b('k/e'), value: b('10') } }, { request_put: { key: b('k/a'), value: b('11') } }],
        },
      },
    ]);
    await Promise.all(
      streams.map(async ({ live, many }) => {
        await Promise.all([live.quiet(QUIET_MS), many.quiet(QUIET_MS)]);
        live.progress();
        await live.next('the progress answer', (r) => r.watch_id === '-1' && r.created !== true);
        live.cancel(100);
        live.cancel(12_345); // unknown: etcd answers nothing
        live.cancel(4);
        live.progress();
        await live.quiet(QUIET_MS);
      }),
    );
    const [direct, proxied] = [streams[0].live.responses, streams[1].live.responses];
    assertSameStreams('live stream', direct, proxied);
    assertSameStreams('40 watches on one stream', streams[0].many.responses, streams[1].many.responses);

    // What etcd 3.4 answered, recorded, so the comparison above is known to compare something.
    const created = direct.filter((r) => r.created === true);
    assert.deepEqual(
      created.map((r) => [r.watch_id ?? '0', r.canceled === true, r.cancel_reason ?? '']),
      [
        ['0', false, ''],
        ['1', false, ''],
        ['2', false, ''],
        ['3', false, ''],
        ['4', false, ''],
        ['5', false, ''],
        ['6', false, ''],
        ['100', false, ''],
        ['-1', true, 'mvcc: duplicate watch ID provided on the WatchStream'],
        ['-1', true, 'mvcc: watcher range is empty'],
        ['-1', true, 'mvcc: watcher range is empty'],
        ['8', false, ''],
        ['7', false, ''],
        ['9', false, ''],
        ['10', false, ''],
        ['11', false, ''],
        ['12', false, ''],
        ['13', false, ''],
      ],
    );
    const progress = direct.filter((r) => r.watch_id === '-1' && r.created !== true);
    assert.equal(progress.length, 2, 'etcd answers every progress request');
    assert.ok(progress.every((r) => r.header?.revision === '13' && (r.events ?? []).length === 0 && r.canceled !== true));
    const cancels = direct.filter((r) => r.canceled === true && r.created !== true);
    assert.deepEqual(cancels.map((r) => [r.watch_id, r.header?.revision]), [['100', '13'], ['4', '13']], 'a cancel of an unknown ID gets no answer');
    const prefixEvents = direct.filter((r) => r.watch_id === '1').flatMap((r) => r.events ?? []);
    assert.equal(prefixEvents.length, 16);
    assert.deepEqual(
      direct.filter((r) => r.watch_id === '11').flatMap((r) => r.events ?? []).map((e) => Number(e.kv?.mod_revision)),
      [6, 6, 6, 7, 8, 9, 10, 10, 10, 10, 11, 13, 13],
      'a future start revision delivers that revision on',
    );
  });

  it('replays from a past start revision, then goes on live, as etcd', async () => {
    const now = await sides[0].revision();
    const creates: WatchCreate[] = [
      { ...PREFIX, start_revision: 2 },
      { ...PREFIX, start_revision: 2, prev_kv: true },
      { ...PREFIX, start_revision: 2, filters: ['NOPUT'] },
      { ...PREFIX, start_revision: 2, filters: ['NODELETE'], prev_kv: true },
      { key: ZERO, range_end: ZERO, start_revision: 2 },
      { key: b('k/a'), start_revision: 5 },
      { key: b('k/m'), range_end: ZERO, start_revision: 3 },
      { ...PREFIX, start_revision: 0 },
      { ...PREFIX, start_revision: now }, // only the newest revision
      { ...PREFIX, start_revision: 1 }, // before anything the proxy saw: etcd's own history
      { key: b('k/a'), start_revision: now + 1 },
    ];
    const streams = await both(sides, async (side) => {
      const stream = side.open();
      await stream.createAll(creates);
      await stream.quiet(QUIET_MS);
      return stream;
    });
    // Live events after the replay: nothing lost or repeated where replay meets live.
    await write([
      { put: 'k/a', value: 'after-replay' },
      { del: 'k/e' },
    ]);
    await Promise.all(streams.map((s) => s.quiet(QUIET_MS)));
    assertSameStreams('replay stream', streams[0].responses, streams[1].responses);
    const replayed = streams[0].responses.filter((r) => r.watch_id === undefined || r.watch_id === '0').flatMap((r) => r.events ?? []);
    assert.equal(replayed.length, 18, 'the replay from revision 2 holds every prefix event and the two live ones');
  });

  it('fragments large responses exactly as etcd, and only for watches that asked', async (t) => {
    const big = (fill: number): Buffer => Buffer.alloc(LARGE, fill);
    const liveStreams = await both(sides, async (side) => {
      const stream = side.open();
      await stream.createAll([
        { key: b('big/'), range_end: b('big0'), fragment: true, prev_kv: true }, // 0
        { key: b('big/'), range_end: b('big0'), prev_kv: true }, // 1: the same without fragment: one message of > 4 MiB
        { key: b('big/'), range_end: b('big0'), fragment: true }, // 2: deletes without prev_kv are small
      ]);
      return stream;
    });
    const revisions = await write([
      { put: 'big/0', value: big(0x61) },
      { put: 'big/s0', value: 'small' },
      { put: 'big/1', value: big(0x62) },
      { put: 'big/s1', value: 'small' },
      { put: 'big/2', value: big(0x63) },
      { put: 'big/s2', value: 'small' },
      // One revision, three delete events each carrying a 1.4 MiB prev_kv: past the 2 MiB limit live.
      { del: 'big/', end: b('big0') },
      { put: 'big/0', value: big(0x64) },
    ]);
    const first = revisions[0] ?? 0;
    const replayStreams = await both(sides, async (side) => {
      const stream = side.open();
      await stream.createAll([
        { key: b('big/'), range_end: b('big0'), start_revision: first, fragment: true }, // 0: a replay of > 2 MiB
        { key: b('big/'), range_end: b('big0'), start_revision: first }, // 1: the same in one message
        { key: b('big/0'), start_revision: first, fragment: true }, // 2: one key: every response holds one event
        { key: b('big/'), range_end: b('big0'), start_revision: first, fragment: true, prev_kv: true, filters: ['NOPUT'] }, // 3
      ]);
      return stream;
    });
    // The last write reaches every watch that takes it (a message of several MiB may take longer than a quiet spell under load).
    const last = revisions[revisions.length - 1] ?? 0;
    const reached = (stream: (typeof liveStreams)[0], ids: readonly string[]): Promise<void> =>
      stream.until(`watches ${ids.join(', ')} to have revision ${last}`, () => ids.every((id) => eventsOf(stream.responses, id).some((e) => Number(e.kv?.mod_revision) === last)), 30_000);
    await Promise.all([...liveStreams.map((s) => reached(s, ['0', '1', '2'])), ...replayStreams.map((s) => reached(s, ['0', '1', '2']))]);
    await Promise.all([...liveStreams, ...replayStreams].map((s) => s.quiet(QUIET_MS)));
    const fragmenting = new Set(['0', '2', '3']);
    assertSameStreams('live large values', liveStreams[0].responses, liveStreams[1].responses, fragmenting);
    // etcd holds back events that reach its send loop before it has sent the watch's created answer, and then sends
    // them whole, fragment asked or not (its flush of pending responses does not fragment): a race of etcd's, seen
    // once in CI. A replay etcd answered so is compared by its events; the proxy's grouping is asserted below.
    const racedInEtcd = [...fragmenting].filter((id) => replayStreams[0].responses.some((r) => (r.watch_id ?? '0') === id && isEventResponse(r) && r.fragment !== true && (r.events?.length ?? 0) > 1 && responseBytes(r) >= FRAGMENT_LIMIT_BYTES));
    if (racedInEtcd.length > 0) t.diagnostic(`etcd sent the replay of watches ${racedInEtcd.join(', ')} unfragmented (its pending-response race): compared by events`);
    assertSameStreams('replayed large values', replayStreams[0].responses, replayStreams[1].responses, new Set([...fragmenting].filter((id) => !racedInEtcd.includes(id))));

    // etcd's own answers, recorded: fragments hold as many events as fit under 2 MiB, all but the last flagged.
    const shape = (responses: readonly WireWatchResponse[], id: string): string[] =>
      responses
        .filter((r) => (r.watch_id ?? '0') === id && isEventResponse(r))
        .map((r) => `${(r.events ?? []).map((e) => `${e.type === 'DELETE' ? '-' : ''}${e.kv?.key?.toString()}`).join(',')}${r.fragment === true ? '+' : ''}`);
    // The proxy's replay, as etcd fragments it when it does not race.
    assert.deepEqual(shape(replayStreams[1].responses, '0'), ['big/0,big/s0+', 'big/1,big/s1+', 'big/2,big/s2,-big/0,-big/1,-big/2,-big/s0,-big/s1,-big/s2+', 'big/0']);
    assert.equal(shape(replayStreams[0].responses, '1').length, 1, 'without fragment, one message however large');
    assert.deepEqual(shape(liveStreams[0].responses, '0'), ['big/0', 'big/s0', 'big/1', 'big/s1', 'big/2', 'big/s2', '-big/0+', '-big/1+', '-big/2,-big/s0,-big/s1,-big/s2', 'big/0']);
  });

  it('cancels a watch whose start revision was compacted, with compact_revision, as etcd', async () => {
    const before = await sides[0].revision();
    const revisions = await write([
      { put: 'c/1', value: 'a' },
      { put: 'c/2', value: 'b' },
      { put: 'c/3', value: 'c' },
      { compact: 'last' },
      { put: 'c/4', value: 'd' },
    ]);
    const compactedAt = revisions[2] ?? 0;
    const streams = await both(sides, async (side) => {
      const stream = side.open();
      await stream.createAll([
        { key: b('c/'), range_end: b('c0'), start_revision: 1 }, // 0: older than anything the proxy saw
        { key: b('c/'), range_end: b('c0'), start_revision: before + 1 }, // 1: seen by the proxy, compacted since
        { key: b('c/'), range_end: b('c0'), start_revision: compactedAt }, // 2: exactly the compact revision: allowed
        { key: b('c/'), range_end: b('c0'), start_revision: compactedAt + 1, prev_kv: true }, // 3
      ]);
      await stream.quiet(QUIET_MS);
      return stream;
    });
    assertSameStreams('compacted', streams[0].responses, streams[1].responses);
    // etcd cancels the compacted watchers of one stream in map order: sorted here.
    const canceled = streams[0].responses.filter((r) => r.canceled === true).sort((x, y) => Number(x.watch_id ?? '0') - Number(y.watch_id ?? '0'));
    assert.deepEqual(
      canceled.map((r) => [r.watch_id ?? '0', r.compact_revision, r.header?.revision]),
      [
        ['0', String(compactedAt), undefined],
        ['1', String(compactedAt), undefined],
      ],
      'etcd answers created, then canceled with compact_revision and an empty header revision',
    );
  });
});

describe('periodic progress_notify through the proxy matches etcd (differential)', () => {
  // Short intervals on both sides; etcd takes it from an experimental flag.
  const intervalMs = 300;
  let etcdA: EtcdServer;
  let etcdB: EtcdServer;
  let proxy: TestProxy;
  let sides: [Side, Side];

  before(async () => {
    const extraArgs = [`--experimental-watch-progress-notify-interval=${intervalMs}ms`];
    [etcdA, etcdB] = await Promise.all([startEtcd({ name: 'direct', extraArgs }), startEtcd({ name: 'behind' })]);
    proxy = await startTestProxy([etcdB.clientUrl], ['--watch-progress-notify-interval', `${intervalMs}ms`]);
    await proxy.mirrored();
    sides = [new Side('etcd', etcdA.clientAddress, async () => undefined), new Side('proxy', proxy.address, (revision) => proxy.mirrored(revision))];
  });
  after(async () => {
    sides?.forEach((side) => side.close());
    await proxy?.stop();
    await Promise.all([etcdA?.stop(), etcdB?.stop()]);
  });

  const isProgress = (r: WireWatchResponse): boolean => r.created !== true && r.canceled !== true && (r.events?.length ?? 0) === 0;

  it('sends event-less progress responses at the current revision only to watches that asked, while they are quiet', async () => {
    const [first] = await both(sides, (side) => side.apply([{ put: 'p/0', value: 'a' }]));
    const streams = await both(sides, async (side) => {
      const stream = side.open();
      await stream.createAll([
        { key: b('p/'), range_end: b('p0'), progress_notify: true }, // 0
        { key: b('p/'), range_end: b('p0') }, // 1: did not ask
        { key: b('q/'), range_end: b('q0'), progress_notify: true, prev_kv: true }, // 2: another range
      ]);
      return stream;
    });
    await sleep(intervalMs * 5);
    const [revisionsA, revisionsB] = await both(sides, (side) => side.apply([{ put: 'p/1', value: 'b' }]));
    assert.deepEqual(revisionsB, revisionsA);
    await sleep(intervalMs * 5);

    const [atFirst, atSecond] = [first[0] ?? 0, revisionsA[0] ?? 0];
    for (const [index, stream] of streams.entries()) {
      const side = sides[index]?.name ?? String(index);
      const progress = stream.responses.filter(isProgress);
      const byWatch = (id: string): WireWatchResponse[] => progress.filter((r) => (r.watch_id ?? '0') === id);
      assert.deepEqual(byWatch('1'), [], `${side}: a watch without progress_notify got progress`);
      for (const id of ['0', '2']) {
        const revisions = byWatch(id).map((r) => Number(r.header?.revision));
        // about five ticks before and five after the write; a tick may fall on either side of it
        assert.ok(revisions.filter((r) => r === atFirst).length >= 2, `${side}: watch ${id} progress before the write: ${revisions}`);
        assert.ok(revisions.filter((r) => r === atSecond).length >= 2, `${side}: watch ${id} progress after the write: ${revisions}`);
        assert.deepEqual(
          revisions.filter((r) => r !== atFirst && r !== atSecond),
          [],
          `${side}: watch ${id} progress names a revision that was never current`,
        );
        assert.deepEqual([...revisions].sort((x, y) => x - y), revisions, `${side}: progress revisions went back`);
      }
      for (const r of progress) {
        assert.deepEqual(normalised(r), normalised({ header: r.header, watch_id: r.watch_id }), `${side}: a progress response carries more than header and watch_id`);
      }
    }
    assertSameStreams('progress_notify, events only', streams[0].responses.filter((r) => !isProgress(r)), streams[1].responses.filter((r) => !isProgress(r)));
  });
});
