// Integration (real etcd): configuration grayscale. Two proxies on one etcd,
// with other hostnames and labels, each shows only the versions whose
// annotations.grayscale names it: over gRPC and JSON, on live watches and
// replays, across a restart and an outage, and after a reload that changes
// who the machine is. Writes and other keys are untouched.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { b64, httpCall } from '../support/http-gateway';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients, type UnaryOutcome } from '../support/raw-client';
import { until } from '../support/until';
import { WatchClient, type WireEvent } from '../support/watch-client';

const b = (text: string): Buffer => Buffer.from(text);
const PREFIX = '/apisix/';
const PREFIX_END = '/apisix0';
const route = (uri: string, grayscale?: object): string => JSON.stringify({ uri, upstream_id: '1', ...(grayscale === undefined ? {} : { annotations: { grayscale } }) });
// bj mirrors only the prefix: its linearizable reads would go to etcd, and must not show what it withholds.
const argsFor = (hostname: string, zone: string): string[] => [
  '--grayscale-prefix', PREFIX, '--grayscale-hostname', hostname, '--grayscale-label', `zone=${zone}`, '--grayscale-label', 'tier=edge', '--upstream-timeout', '1s',
  ...(hostname.includes('bj') ? ['--mirror-prefix', PREFIX] : []),
  // The rolling comparison with etcd runs all along: what a machine withholds is no difference.
  '--consistency-check-interval', '100ms', '--consistency-check-bytes-per-second', '10000000',
];
/** Each machine also exports its apisix.yaml every 100 ms, into <data dir>/export. */
const exportArgs = (dataDir: string): string[] => ['--snapshot-dir', join(dataDir, 'export'), '--snapshot-interval', '100ms', '--apisix-prefix', '/apisix'];
const exported = (machine: { dataDir: string }): string => {
  try {
    return readFileSync(join(machine.dataDir, 'export', 'apisix.yaml'), 'utf8');
  } catch {
    return '';
  }
};

interface RangeReply {
  header: { revision: string };
  kvs?: { key: Buffer; value: Buffer; mod_revision: string; version: string }[];
  count?: string;
}

interface Machine {
  readonly name: string;
  proxy: TestProxy;
  clients: RawClients;
  watch: WatchClient;
  readonly dataDir: string;
  readonly args: string[];
}

interface Report {
  hostname: string;
  withheld: { key: string; visible_mod_revision: number | null; newest_mod_revision: number }[];
}

const isStale = (outcome: UnaryOutcome<unknown>): boolean => outcome.headers?.get('x-etcd-cache-proxy-stale')[0] === 'true';

describe('configuration grayscale', () => {
  let etcd: EtcdServer;
  let direct: RawClients;
  let sh: Machine;
  let bj: Machine;

  const put = async (via: RawClients, key: string, value: string): Promise<number> => {
    const outcome = await call<{ header: { revision: string } }>(via.kv, 'Put', { key: b(key), value: b(value) });
    assert.equal(outcome.error, null, outcome.error?.details);
    return Number(outcome.response?.header.revision);
  };
  const get = async (machine: Machine, key: string, extra: object = {}): Promise<UnaryOutcome<RangeReply>> => {
    const outcome = await call<RangeReply>(machine.clients.kv, 'Range', { key: b(key), ...extra });
    assert.equal(outcome.error, null, outcome.error?.details);
    return outcome;
  };
  const valueAt = async (machine: Machine, key: string, extra: object = {}): Promise<string | null> => {
    const kv = (await get(machine, key, extra)).response?.kvs?.[0];
    return kv === undefined ? null : kv.value.toString();
  };
  const jsonKeys = async (machine: Machine): Promise<Record<string, string>> => {
    const answer = await httpCall(machine.proxy.url, '/v3/kv/range', JSON.stringify({ key: b64(PREFIX), range_end: b64(PREFIX_END) }));
    assert.equal(answer.status, 200, answer.text);
    const kvs = (answer.json as { kvs?: { key: string; value: string }[] }).kvs ?? [];
    return Object.fromEntries(kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value, 'base64').toString()]));
  };
  const report = async (machine: Machine): Promise<Report> => {
    const answer = await httpCall(machine.proxy.url, '/grayscale', null);
    assert.equal(answer.status, 200, answer.text);
    return answer.json as Report;
  };
  const withheldGauge = async (machine: Machine): Promise<number> => (await machine.proxy.metrics.grayscaleWithheldKeys.get()).values[0]?.value ?? 0;
  const events = (machine: Machine, from = 0): WireEvent[] => machine.watch.responses.slice(from).flatMap((r) => r.events ?? []);
  const describeEvent = (event: WireEvent): string =>
    `${event.type ?? 'PUT'} ${event.kv?.key?.toString()}@${event.kv?.mod_revision} prev=${event.prev_kv?.mod_revision ?? '-'}`;
  /** Every event a machine's watch got after index `from`, once a write made after them has arrived (nothing else can be on its way). */
  const settledEvents = async (machine: Machine, from: number): Promise<string[]> => {
    const sentinel = `${PREFIX}sentinel`;
    const revision = await put(direct, sentinel, `${Date.now()}`);
    await machine.watch.until(`${machine.name} to see the sentinel at ${revision}`, () => events(machine, from).some((e) => e.kv?.mod_revision === String(revision)));
    return events(machine, from).filter((e) => e.kv?.key?.toString() !== sentinel).map(describeEvent);
  };
  const startMachine = async (name: string, zone: string, dataDir: string): Promise<Machine> => {
    const args = [...argsFor(name, zone), ...exportArgs(dataDir)];
    const proxy = await startTestProxy([etcd.clientUrl], args, { dataDir });
    await proxy.mirrored();
    const clients = rawClients(proxy.address);
    const watch = new WatchClient(proxy.address);
    await watch.createAll([{ key: b(PREFIX), range_end: b(PREFIX_END), prev_kv: true }]);
    return { name, proxy, clients, watch, dataDir, args };
  };
  const stopMachine = async (machine: Machine | undefined): Promise<void> => {
    machine?.watch.close();
    machine?.clients.close();
    await machine?.proxy.stop();
  };

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    await put(direct, `${PREFIX}routes/1`, route('/v1'));
    await put(direct, `${PREFIX}upstreams/1`, JSON.stringify({ nodes: { '127.0.0.1:80': 1 } }));
    await put(direct, '/other/x', route('/o', { hostname: ['nobody'] }));
    sh = await startMachine('gw-sh-1', 'sh', mkdtempSync(join(tmpdir(), 'ecp-grayscale-sh-')));
    bj = await startMachine('gw-bj-1', 'bj', mkdtempSync(join(tmpdir(), 'ecp-grayscale-bj-')));
  });
  after(async () => {
    await stopMachine(sh);
    await stopMachine(bj);
    direct?.close();
    await etcd?.stop();
    for (const machine of [sh, bj]) if (machine !== undefined) rmSync(machine.dataDir, { recursive: true, force: true });
  });

  it('shows a new route marked for one machine only there, written through the other (writes are untouched)', async () => {
    const [shFrom, bjFrom] = [sh.watch.responses.length, bj.watch.responses.length];
    const revision = await put(bj.clients, `${PREFIX}routes/2`, route('/canary', { hostname: ['gw-sh-1'] }));
    assert.equal((await call(direct.kv, 'Range', { key: b(`${PREFIX}routes/2`) })).error, null);
    await sh.proxy.mirrored(revision);
    await bj.proxy.mirrored(revision);
    assert.equal(await valueAt(sh, `${PREFIX}routes/2`), route('/canary', { hostname: ['gw-sh-1'] }));
    assert.equal(await valueAt(bj, `${PREFIX}routes/2`), null);
    assert.equal(await valueAt(bj, `${PREFIX}routes/2`, { serializable: true }), null);
    assert.equal((await jsonKeys(sh))[`${PREFIX}routes/2`] !== undefined, true);
    assert.equal((await jsonKeys(bj))[`${PREFIX}routes/2`], undefined);
    const counted = await get(bj, PREFIX, { range_end: b(PREFIX_END), count_only: true });
    assert.equal(counted.response?.count, '2', 'count is that of the visible view');
    assert.equal(counted.response?.header.revision, String(revision), 'header revisions stay the mirror\'s');
    assert.deepEqual(await settledEvents(sh, shFrom), [`PUT ${PREFIX}routes/2@${revision} prev=-`]);
    assert.deepEqual(await settledEvents(bj, bjFrom), []);
    assert.deepEqual((await report(bj)).withheld, [{ key: `${PREFIX}routes/2`, visible_mod_revision: null, newest_mod_revision: revision }]);
    assert.deepEqual((await report(sh)).withheld, []);
    assert.equal(await withheldGauge(bj), 1);
    // The apisix.yaml export is the machine's view too.
    await until('sh to export the canary route', () => exported(sh).includes('/canary'));
    await put(direct, `${PREFIX}upstreams/2`, JSON.stringify({ desc: 'written-after-the-canary', nodes: { '127.0.0.1:81': 1 } }));
    await until('bj to export a key written after the canary route', () => exported(bj).includes('written-after-the-canary'));
    assert.equal(exported(bj).includes('/canary'), false, exported(bj));
    // Outside the grayscale prefixes a mark means nothing.
    assert.equal(await valueAt(bj, '/other/x'), route('/o', { hostname: ['nobody'] }));
  });

  it('keeps the old version of a route on machines an update is not marked for (labels with lists)', async () => {
    const before = Number((await get(bj, `${PREFIX}routes/1`)).response?.kvs?.[0]?.mod_revision);
    const [shFrom, bjFrom] = [sh.watch.responses.length, bj.watch.responses.length];
    const revision = await put(direct, `${PREFIX}routes/1`, route('/v2', { labels: { zone: ['sh', 'gz'], tier: 'edge' } }));
    await bj.proxy.mirrored(revision);
    await sh.proxy.mirrored(revision);
    const old = (await get(bj, `${PREFIX}routes/1`)).response?.kvs?.[0];
    assert.equal(old?.value.toString(), route('/v1'));
    assert.equal(old?.mod_revision, String(before), 'the visible version keeps its own mod revision');
    assert.equal(await valueAt(sh, `${PREFIX}routes/1`), route('/v2', { labels: { zone: ['sh', 'gz'], tier: 'edge' } }));
    assert.deepEqual(await settledEvents(sh, shFrom), [`PUT ${PREFIX}routes/1@${revision} prev=${before}`]);
    assert.deepEqual(await settledEvents(bj, bjFrom), []);
    // A linearizable read on the machine that withholds it: still its own view.
    assert.equal(await valueAt(bj, `${PREFIX}routes/1`), route('/v1'));
    const byJson = await jsonKeys(bj);
    assert.equal(byJson[`${PREFIX}routes/1`], route('/v1'));
  });

  it('rolls a change out with one PUT on each machine when the mark is removed', async () => {
    const [shFrom, bjFrom] = [sh.watch.responses.length, bj.watch.responses.length];
    const v1 = Number((await get(bj, `${PREFIX}routes/1`)).response?.kvs?.[0]?.mod_revision);
    const v2 = Number((await get(sh, `${PREFIX}routes/1`)).response?.kvs?.[0]?.mod_revision);
    const canary = Number((await get(sh, `${PREFIX}routes/2`)).response?.kvs?.[0]?.mod_revision);
    const first = await put(direct, `${PREFIX}routes/1`, route('/v2'));
    const second = await put(direct, `${PREFIX}routes/2`, route('/canary'));
    assert.deepEqual(await settledEvents(sh, shFrom), [`PUT ${PREFIX}routes/1@${first} prev=${v2}`, `PUT ${PREFIX}routes/2@${second} prev=${canary}`]);
    assert.deepEqual(await settledEvents(bj, bjFrom), [`PUT ${PREFIX}routes/1@${first} prev=${v1}`, `PUT ${PREFIX}routes/2@${second} prev=-`]);
    assert.deepEqual(await jsonKeys(bj), await jsonKeys(sh));
    assert.deepEqual((await report(bj)).withheld, []);
    assert.equal(await withheldGauge(bj), 0);
  });

  it('sends a delete everywhere something was visible, and nothing where nothing was', async () => {
    const [shFrom, bjFrom] = [sh.watch.responses.length, bj.watch.responses.length];
    const shown = Number((await get(bj, `${PREFIX}routes/2`)).response?.kvs?.[0]?.mod_revision);
    const deleted = await call<{ header: { revision: string } }>(direct.kv, 'DeleteRange', { key: b(`${PREFIX}routes/2`) });
    const deletedAt = Number(deleted.response?.header.revision);
    const only = await put(direct, `${PREFIX}routes/3`, route('/sh-only', { hostname: ['gw-sh-1'] }));
    const gone = Number((await call<{ header: { revision: string } }>(direct.kv, 'DeleteRange', { key: b(`${PREFIX}routes/3`) })).response?.header.revision);
    assert.deepEqual(await settledEvents(sh, shFrom), [`DELETE ${PREFIX}routes/2@${deletedAt} prev=${shown}`, `PUT ${PREFIX}routes/3@${only} prev=-`, `DELETE ${PREFIX}routes/3@${gone} prev=${only}`]);
    assert.deepEqual(await settledEvents(bj, bjFrom), [`DELETE ${PREFIX}routes/2@${deletedAt} prev=${shown}`]);
    assert.deepEqual((await report(bj)).withheld, [], 'a delete applies everywhere');
  });

  it('applies a malformed mark nowhere, and counts it', async () => {
    const [shFrom, bjFrom] = [sh.watch.responses.length, bj.watch.responses.length];
    const revision = await put(direct, `${PREFIX}routes/4`, route('/typo', { hostnames: ['gw-sh-1', 'gw-bj-1'] }));
    assert.deepEqual(await settledEvents(sh, shFrom), []);
    assert.deepEqual(await settledEvents(bj, bjFrom), []);
    for (const machine of [sh, bj]) {
      assert.equal(await valueAt(machine, `${PREFIX}routes/4`), null);
      assert.deepEqual((await report(machine)).withheld.map((w) => w.key), [`${PREFIX}routes/4`]);
      assert.equal((await machine.proxy.metrics.grayscaleMalformedMarks.get()).values[0]?.value, 1);
    }
    const fixed = await put(direct, `${PREFIX}routes/4`, route('/fixed'));
    assert.equal(fixed > revision, true);
  });

  it('replays from a past revision exactly what it sent live, and reads past revisions of the view', async () => {
    for (const machine of [sh, bj]) {
      await settledEvents(machine, 0); // everything written so far has arrived live
      const live = machine.watch.responses.flatMap((r) => r.events ?? []).filter((e) => !e.kv?.key?.toString().endsWith('sentinel'));
      const firstRevision = Number(live[0]?.kv?.mod_revision);
      const replay = new WatchClient(machine.proxy.address);
      try {
        await replay.createAll([{ key: b(PREFIX), range_end: b(PREFIX_END), prev_kv: true, start_revision: firstRevision }]);
        const lastRevision = live[live.length - 1]?.kv?.mod_revision;
        await replay.until(`${machine.name}'s replay to reach ${lastRevision}`, () => replay.responses.some((r) => (r.events ?? []).some((e) => e.kv?.mod_revision === lastRevision)));
        const replayed = replay.responses.flatMap((r) => r.events ?? []).filter((e) => !e.kv?.key?.toString().endsWith('sentinel'));
        assert.deepEqual(replayed.map(describeEvent), live.map(describeEvent), machine.name);
      } finally {
        replay.close();
      }
    }
    // At a revision where etcd held the version marked for sh and zone gz, bj's view held /v1.
    const marked = await call<RangeReply>(direct.kv, 'Range', { key: b(`${PREFIX}routes/1`), revision: '0' });
    const history = Number(marked.response?.kvs?.[0]?.mod_revision) - 1;
    assert.equal(await valueAt(bj, `${PREFIX}routes/1`, { revision: String(history) }), route('/v1'));
    assert.equal(await valueAt(sh, `${PREFIX}routes/1`, { revision: String(history) }), route('/v2', { labels: { zone: ['sh', 'gz'], tier: 'edge' } }));
  });

  it('never sends a grayscale read or watch to etcd: history older than the log is compacted here', async () => {
    for (const machine of [sh, bj]) {
      const replay = new WatchClient(machine.proxy.address);
      try {
        const [created] = await replay.createAll([{ key: b(PREFIX), range_end: b(PREFIX_END), start_revision: 1 }]);
        assert.equal(created?.created, true);
        const cancelled = await replay.next('a compacted cancel', (r) => r.canceled === true);
        assert.equal(Number(cancelled.compact_revision) > 1, true, machine.name);
        assert.equal(replay.responses.some((r) => (r.events ?? []).length > 0), false, 'etcd would have replayed every version');
      } finally {
        replay.close();
      }
      const old = await call<RangeReply>(machine.clients.kv, 'Range', { key: b(`${PREFIX}routes/1`), revision: '2' });
      assert.equal(old.error?.details, 'etcdserver: mvcc: required revision has been compacted', machine.name);
    }
  });

  it('keeps the view across an outage and a restart during it, and follows etcd afterwards', async () => {
    const canary = await put(direct, `${PREFIX}routes/5`, route('/sh-only', { hostname: ['gw-sh-1'] }));
    await sh.proxy.mirrored(canary);
    await bj.proxy.mirrored(canary);
    etcd.signal('SIGKILL');
    await until('bj to notice etcd is gone', async () => ((await bj.proxy.metrics.upstreamUp.get()).values[0]?.value ?? 1) === 0);
    const during = await get(bj, `${PREFIX}routes/5`);
    assert.equal(isStale(during), true);
    assert.equal(during.response?.kvs?.length ?? 0, 0);
    assert.equal(await valueAt(sh, `${PREFIX}routes/5`), route('/sh-only', { hostname: ['gw-sh-1'] }));

    await stopMachine(bj);
    bj = await (async (): Promise<Machine> => {
      const proxy = await startTestProxy([etcd.clientUrl], bj.args, { dataDir: bj.dataDir });
      const clients = rawClients(proxy.address);
      const watch = new WatchClient(proxy.address);
      await watch.createAll([{ key: b(PREFIX), range_end: b(PREFIX_END), prev_kv: true }]);
      return { ...bj, proxy, clients, watch };
    })();
    assert.equal(await valueAt(bj, `${PREFIX}routes/5`), null, 'the view is in the store');
    assert.equal((await jsonKeys(bj))[`${PREFIX}routes/5`], undefined);
    assert.deepEqual((await report(bj)).withheld.map((w) => w.key), [`${PREFIX}routes/5`]);
    assert.equal(await withheldGauge(bj), 1);

    await etcd.restart();
    const [shFrom, bjFrom] = [sh.watch.responses.length, bj.watch.responses.length];
    const unmarked = await put(direct, `${PREFIX}routes/5`, route('/everyone'));
    await bj.proxy.mirrored(unmarked);
    assert.deepEqual(await settledEvents(bj, bjFrom), [`PUT ${PREFIX}routes/5@${unmarked} prev=-`]);
    assert.deepEqual(await settledEvents(sh, shFrom), [`PUT ${PREFIX}routes/5@${unmarked} prev=${canary}`]);
  });

  it('finds no difference with etcd in what it withholds, round after round', async () => {
    for (const machine of [sh, bj]) {
      const checks = async (result: string): Promise<number> => (await machine.proxy.metrics.consistencyChecks.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
      const rounds = await checks('match');
      const withheld = await put(direct, `${PREFIX}routes/7-${machine.name}`, route('/elsewhere', { hostname: ['nobody'] }));
      await machine.proxy.mirrored(withheld);
      await until(`${machine.name}: two more rounds of the consistency check`, async () => (await checks('match')) >= rounds + 2);
      assert.equal(await checks('mismatch'), 0, machine.name);
      assert.equal(await valueAt(machine, `${PREFIX}routes/7-${machine.name}`), null);
    }
  });

  it('derives the view again on a reload that changes who the machine is, and cancels its watches as compacted', async () => {
    const revision = await put(direct, `${PREFIX}routes/6`, route('/zone-sh', { labels: { zone: 'sh' } }));
    await bj.proxy.mirrored(revision);
    assert.equal(await valueAt(bj, `${PREFIX}routes/6`), null);
    const from = bj.watch.responses.length;
    const next = loadConfig({
      argv: ['--endpoints', etcd.clientUrl, '--listen-addr', '127.0.0.1:0', '--data-dir', bj.dataDir, '--shutdown-grace', '2s', ...argsFor('gw-bj-1', 'sh'), ...exportArgs(bj.dataDir)],
      env: {},
    });
    const changes = bj.proxy.proxy.reconfigure(next);
    assert.deepEqual(changes.needRestart, []);
    assert.equal(changes.live.includes('grayscale'), true);
    assert.equal(await valueAt(bj, `${PREFIX}routes/6`), route('/zone-sh', { labels: { zone: 'sh' } }));
    const cancelled = await bj.watch.next('the watch cancelled as compacted', (r) => r.canceled === true, from);
    assert.equal(Number(cancelled.compact_revision) > revision, true, `compact revision ${cancelled.compact_revision}`);
    assert.deepEqual((await report(bj)).withheld.map((w) => w.key), [`${PREFIX}routes/7-gw-bj-1`, `${PREFIX}routes/7-gw-sh-1`], 'marked for nobody: still withheld');
  });
});
