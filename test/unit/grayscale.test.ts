// Unit (no etcd): how a grayscale mark is read, and how this machine's view
// follows upstream events, lists and changed settings, over a real LMDB store.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { open } from 'lmdb';
import pino from 'pino';
import type { GrayscaleSettings } from '../../src/settings/types';
import { encodeEvent, type EncodedEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue, type EncodedKeyValue } from '../../src/etcd/kv-bytes';
import { judgeValue } from '../../src/grayscale/mark';
import { GrayscaleView, describeSettings, rederive } from '../../src/grayscale/view';
import { openStore, type MirrorStore } from '../../src/store/store';

const log = pino({ level: 'silent' });
const SELF = { hostname: 'gw-sh-1', labels: { zone: 'sh', tier: 'edge' } };
const SETTINGS: GrayscaleSettings = { prefixes: ['/apisix/'], ...SELF };
const IDENTITY = { cluster_id: '1', member_id: '2', raft_term: '3' };

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const marked = (grayscale: unknown, extra: object = {}): Buffer => json({ uri: '/x', ...extra, annotations: { grayscale } });

function kv(key: string, value: Buffer, modRevision: number, version = 1, createRevision = modRevision): EncodedKeyValue {
  return encodeKeyValue({ key: Buffer.from(key), value, create_revision: createRevision, mod_revision: modRevision, version, lease: '0' });
}

function tombstone(key: string, revision: number): EncodedKeyValue {
  return encodeKeyValue({ key: Buffer.from(key), value: Buffer.alloc(0), create_revision: 0, mod_revision: revision, version: 0, lease: '0' });
}

describe('grayscale marks (unit)', () => {
  const verdict = (value: Buffer): string => judgeValue(value, SELF).kind;

  it('applies a value with no mark, or that is not a JSON object, everywhere', () => {
    assert.equal(verdict(json({ uri: '/a' })), 'applies');
    assert.equal(verdict(Buffer.from('grayscale but not json')), 'applies');
    assert.equal(verdict(json(['grayscale'])), 'applies');
    assert.equal(verdict(json({ annotations: 'grayscale' })), 'applies');
    assert.equal(verdict(json({ desc: 'grayscale', annotations: { other: 1 } })), 'applies');
  });

  it('applies a mark only where every condition it gives holds', () => {
    assert.equal(verdict(marked({ hostname: ['gw-sh-1', 'gw-sh-2'] })), 'applies');
    assert.equal(verdict(marked({ hostname: ['gw-bj-1'] })), 'withheld');
    assert.equal(verdict(marked({ hostname: [] })), 'withheld');
    assert.equal(verdict(marked({ labels: { zone: 'sh' } })), 'applies');
    assert.equal(verdict(marked({ labels: { zone: ['bj', 'sh'] } })), 'applies');
    assert.equal(verdict(marked({ labels: { zone: ['bj'] } })), 'withheld');
    assert.equal(verdict(marked({ labels: { zone: 'sh', tier: 'core' } })), 'withheld');
    assert.equal(verdict(marked({ labels: { rack: 'r1' } })), 'withheld', 'a label this machine does not have never matches');
    assert.equal(verdict(marked({ hostname: ['gw-sh-1'], labels: { zone: 'bj' } })), 'withheld');
    assert.equal(verdict(marked({ hostname: ['gw-sh-1'], labels: { tier: ['edge'] } })), 'applies');
    assert.equal(verdict(marked({ labels: { constructor: 'x' } })), 'withheld', 'no inherited property counts as a label');
  });

  it('reads a mark it cannot understand as applying nowhere', () => {
    for (const mark of [null, 'gw-sh-1', ['gw-sh-1'], { hostname: 'gw-sh-1' }, { hostname: [1] }, { hostnames: ['gw-sh-1'] }, { labels: ['zone'] }, { labels: { zone: 1 } }, { labels: { zone: [1] } }]) {
      assert.equal(verdict(marked(mark)), 'malformed', JSON.stringify(mark));
    }
  });
});

describe("this machine's view (unit, LMDB)", () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  const freshStore = (): MirrorStore => {
    const dir = mkdtempSync(join(tmpdir(), 'ecp-grayscale-'));
    dirs.push(dir);
    return openStore(dir);
  };
  /** Applies raw upstream events as the mirror does: through the view, into the store. */
  const apply = (store: MirrorStore, view: GrayscaleView, events: EncodedEvent[]): readonly EncodedEvent[] => {
    const seen = view.viewEvents(events, (key) => store.get(key));
    const through = Math.max(...events.map((event) => event.kv.mod_revision));
    store.applyEvents(seen.events, IDENTITY, through, seen.withheld);
    return seen.events;
  };
  const summary = (events: readonly EncodedEvent[]): string[] =>
    events.map((event) => `${event.type} ${event.kv.key.toString()}@${event.kv.mod_revision} prev=${event.prev_kv?.mod_revision ?? '-'}`);

  it('withholds a put marked for others, and carries the visible version as prev_kv of the next one that applies', async () => {
    const store = freshStore();
    let malformed = 0;
    const view = new GrayscaleView(SETTINGS, log, () => (malformed += 1));
    const v1 = kv('/apisix/routes/1', json({ uri: '/v1' }), 2);
    const v2 = kv('/apisix/routes/1', marked({ hostname: ['gw-bj-1'] }), 3, 2, 2);
    const v3 = kv('/apisix/routes/1', marked({ hostname: ['gw-sh-1'] }), 4, 3, 2);
    assert.deepEqual(summary(apply(store, view, [encodeEvent('PUT', v1)])), ['PUT /apisix/routes/1@2 prev=-']);
    assert.deepEqual(summary(apply(store, view, [encodeEvent('PUT', v2, v1)])), [], 'a withheld put sends nothing');
    assert.equal(store.get(Buffer.from('/apisix/routes/1'))?.mod_revision, 2, 'reads keep the version that applied');
    assert.equal(store.withheld(Buffer.from('/apisix/routes/1'))?.mod_revision, 3);
    assert.equal(store.meta().revision, 3, 'the mirror revision still moves');
    assert.deepEqual(summary(apply(store, view, [encodeEvent('PUT', v3, v2)])), ['PUT /apisix/routes/1@4 prev=2'], 'prev_kv is what was visible, not what etcd had');
    assert.equal(store.withheld(Buffer.from('/apisix/routes/1')), undefined);
    const logged = [...store.eventsAfter(0)].flatMap((entry) => summary(entry.events));
    assert.deepEqual(logged, ['PUT /apisix/routes/1@2 prev=-', 'PUT /apisix/routes/1@4 prev=2'], 'the log replays the view');
    assert.equal(malformed, 0);
    await store.close();
  });

  it('sends a delete only where a version was visible, and passes keys outside the prefixes through', async () => {
    const store = freshStore();
    const view = new GrayscaleView(SETTINGS, log);
    const hidden = kv('/apisix/routes/9', marked({ labels: { zone: 'bj' } }), 2);
    const outside = kv('/other/a', marked({ hostname: ['nobody'] }), 3);
    assert.deepEqual(summary(apply(store, view, [encodeEvent('PUT', hidden), encodeEvent('PUT', outside)])), ['PUT /other/a@3 prev=-']);
    assert.deepEqual(summary(apply(store, view, [encodeEvent('DELETE', tombstone('/apisix/routes/9', 4), hidden)])), [], 'nothing was visible: nothing changes');
    assert.equal(store.withheld(Buffer.from('/apisix/routes/9')), undefined, 'a delete applies everywhere');
    const shown = kv('/apisix/routes/5', json({ uri: '/5' }), 5);
    const hiddenUpdate = kv('/apisix/routes/5', marked({ hostname: ['gw-bj-1'] }), 6, 2, 5);
    apply(store, view, [encodeEvent('PUT', shown)]);
    apply(store, view, [encodeEvent('PUT', hiddenUpdate, shown)]);
    assert.deepEqual(summary(apply(store, view, [encodeEvent('DELETE', tombstone('/apisix/routes/5', 7), hiddenUpdate)])), ['DELETE /apisix/routes/5@7 prev=5']);
    assert.equal(store.get(Buffer.from('/apisix/routes/5')), undefined);
    await store.close();
  });

  it('keeps several events of one key in one response in order', async () => {
    const store = freshStore();
    const view = new GrayscaleView(SETTINGS, log);
    const a = kv('/apisix/r', json({ n: 1 }), 2);
    const b = kv('/apisix/r', marked({ hostname: ['x'] }), 3, 2, 2);
    const c = kv('/apisix/r', json({ n: 3 }), 4, 3, 2);
    assert.deepEqual(summary(apply(store, view, [encodeEvent('PUT', a), encodeEvent('PUT', b, a), encodeEvent('PUT', c, b)])), ['PUT /apisix/r@2 prev=-', 'PUT /apisix/r@4 prev=2']);
    await store.close();
  });

  it('logs and counts a malformed mark once per key and revision, and applies it nowhere', () => {
    let malformed = 0;
    const view = new GrayscaleView(SETTINGS, log, () => (malformed += 1));
    const bad = kv('/apisix/routes/1', marked({ hostname: 'gw-sh-1' }), 2);
    assert.equal(view.applies(bad), false);
    assert.equal(view.applies(bad), false);
    assert.equal(malformed, 1);
    assert.equal(view.applies(kv('/apisix/routes/1', marked({ hostname: 'gw-sh-1' }), 3)), false);
    assert.equal(malformed, 2);
  });

  it('opens read-only a store written before the grayscale tables existed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ecp-grayscale-old-'));
    dirs.push(dir);
    const root = open({ path: join(dir, 'mirror'), maxDbs: 8 });
    root.openDB({ name: 'meta', encoding: 'msgpack' }).putSync('meta', { schemaVersion: 2, identity: null, revision: 0, compactRevision: 0, logStart: 0, scope: 'all', activeKv: 'kv-a' });
    for (const name of ['kv-a', 'kv-b', 'log', 'members']) root.openDB({ name });
    await root.close();
    const store = openStore(dir, { readOnly: true });
    assert.equal(store.withheldCount(), 0);
    assert.deepEqual([...store.allWithheld()], []);
    assert.equal(store.withheld(Buffer.from('/apisix/x')), undefined);
    assert.equal(store.grayscaleSettings(), '');
    await store.close();
  });

  it('keeps the version it showed when a list finds a withheld one, and derives the view again when settings change', async () => {
    const store = freshStore();
    const view = new GrayscaleView(SETTINGS, log);
    const old = kv('/apisix/routes/1', json({ uri: '/old' }), 2);
    apply(store, view, [encodeEvent('PUT', old)]);
    const forBj = kv('/apisix/routes/1', marked({ labels: { zone: 'bj' } }), 5, 2, 2);
    const newForBj = kv('/apisix/routes/2', marked({ labels: { zone: 'bj' } }), 6);
    const plain = kv('/apisix/routes/3', json({ uri: '/3' }), 7);
    const listed = view.viewListed([forBj, newForBj, plain], (key) => store.get(key));
    assert.deepEqual(listed.visible.map((r) => `${r.key.toString()}@${r.mod_revision}`), ['/apisix/routes/1@2', '/apisix/routes/3@7']);
    assert.deepEqual(listed.withheld.map((r) => `${r.key.toString()}@${r.mod_revision}`), ['/apisix/routes/1@5', '/apisix/routes/2@6']);
    const writer = store.beginSnapshot();
    writer.putPage(listed.visible);
    writer.putWithheld(listed.withheld);
    writer.commit(7, IDENTITY, 0, 'all');
    assert.equal(store.withheldCount(), 2);

    // This machine moves to zone bj: what was withheld for bj shows, with its own revisions.
    const bj: GrayscaleSettings = { ...SETTINGS, labels: { zone: 'bj' } };
    view.configure(bj);
    const changes = rederive(view, store, bj.prefixes);
    store.rederive(changes.visible, changes.withheld, describeSettings(bj));
    assert.equal(store.get(Buffer.from('/apisix/routes/1'))?.mod_revision, 5);
    assert.equal(store.get(Buffer.from('/apisix/routes/2'))?.mod_revision, 6);
    assert.equal(store.withheldCount(), 0);
    assert.equal(store.grayscaleSettings(), describeSettings(bj));
    assert.equal(store.meta().logStart, 8, 'the log of the old view is not replayed');

    // Marked for nobody here any more: the newest is withheld; no older version is known, so none shows.
    view.configure({ ...SETTINGS, labels: { zone: 'gz' } });
    const again = rederive(view, store, SETTINGS.prefixes);
    store.rederive(again.visible, again.withheld, 'gz');
    assert.equal(store.get(Buffer.from('/apisix/routes/1')), undefined);
    assert.equal(store.get(Buffer.from('/apisix/routes/3'))?.mod_revision, 7);
    assert.equal(store.withheldCount(), 2);

    // Grayscale off: everything shows as etcd holds it.
    const off: GrayscaleSettings = { ...SETTINGS, prefixes: [] };
    view.configure(off);
    const everything = rederive(view, store, off.prefixes);
    store.rederive(everything.visible, everything.withheld, describeSettings(off));
    assert.equal(store.get(Buffer.from('/apisix/routes/1'))?.mod_revision, 5);
    assert.equal(store.withheldCount(), 0);
    await store.close();
  });
});
