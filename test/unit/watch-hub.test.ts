// Unit: the watch hub over a real LMDB store, fed by a stand-in for the
// mirror (an EventEmitter; no etcd): the seam between replay and live
// events, filters, compaction and re-list cancellation.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Mirror, MirrorEvents } from '../../src/mirror/mirror';
import { encodeEvent, type EncodedEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import type { HeaderIdentity } from '../../src/etcd/records';
import { openStore, type MirrorStore } from '../../src/store/store';
import { WatchHub, type HubWatcher, type WatchSink } from '../../src/watch/hub';
import { toWatchSpec, type WatchSpec, type WireWatchCreateRequest } from '../../src/watch/watch-spec';

const identity: HeaderIdentity = { cluster_id: '1', member_id: '2', raft_term: '3' };

function putEvent(key: string, revision: number): EncodedEvent {
  return encodeEvent('PUT', encodeKeyValue({ key: Buffer.from(key), value: Buffer.from(`v${revision}`), create_revision: revision, mod_revision: revision, version: 1, lease: '0' }));
}
function deleteEvent(key: string, revision: number): EncodedEvent {
  return encodeEvent('DELETE', encodeKeyValue({ key: Buffer.from(key), value: Buffer.alloc(0), create_revision: 0, mod_revision: revision, version: 0, lease: '0' }));
}

function spec(request: WireWatchCreateRequest): WatchSpec {
  const result = toWatchSpec(request);
  if ('error' in result) throw new Error(result.error);
  return result;
}

/** Collects what the hub sends one watcher. */
class RecordingSink implements WatchSink {
  readonly revisions: number[] = [];
  compactedAt: number | null = null;
  open = true;
  events(_watcher: HubWatcher, _revision: number, events: readonly EncodedEvent[]): void {
    for (const event of events) this.revisions.push(event.kv.mod_revision);
  }
  compacted(_watcher: HubWatcher, compactRevision: number): void {
    this.compactedAt = compactRevision;
  }
  writable(): boolean {
    return this.open;
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('WatchHub (unit)', () => {
  let dir: string;
  let store: MirrorStore;
  let mirror: EventEmitter<MirrorEvents>;
  let hub: WatchHub;
  /** Commits events at the next revision and tells the hub, as the mirror does. */
  let commit: (...keys: string[]) => number;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-hub-'));
    store = openStore(dir);
    const snapshot = store.beginSnapshot();
    snapshot.commit(1, identity, 0, 'all');
    mirror = new EventEmitter<MirrorEvents>();
    hub = new WatchHub(store, mirror as unknown as Mirror);
    commit = (...keys) => {
      const revision = store.meta().revision + 1;
      const events = keys.map((key) => (key.startsWith('-') ? deleteEvent(key.slice(1), revision) : putEvent(key, revision)));
      store.applyEvents(events, identity);
      mirror.emit('applied', revision, events);
      return revision;
    };
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('replays from the log and joins live events with no gap and no duplicate, while commits keep coming', async () => {
    for (let i = 0; i < 2_500; i += 1) commit(`/k/${i % 7}`);
    const sink = new RecordingSink();
    const watcher = hub.add(spec({ key: Buffer.from('/k/'), range_end: Buffer.from('/k0'), start_revision: '2' }), sink);
    assert.ok(!('compactRevision' in watcher));
    // Commits between catch-up steps: the replay (1000 revisions a step) must meet them exactly once.
    for (let step = 0; step < 5; step += 1) {
      commit('/k/live');
      await settle();
    }
    const last = store.meta().revision;
    assert.equal(watcher.synced, true);
    assert.deepEqual(sink.revisions, Array.from({ length: last - 1 }, (_, i) => i + 2));
  });

  it('sends live events only to matching watchers, honouring filters', async () => {
    const all = new RecordingSink();
    const noDelete = new RecordingSink();
    const single = new RecordingSink();
    hub.add(spec({ key: Buffer.from([0]), range_end: Buffer.from([0]) }), all);
    hub.add(spec({ key: Buffer.from('/a'), range_end: Buffer.from('/b'), filters: ['NODELETE'] }), noDelete);
    hub.add(spec({ key: Buffer.from('/a/1') }), single);
    const r1 = commit('/a/1');
    const r2 = commit('/a/2');
    const r3 = commit('-/a/1');
    const r4 = commit('/z');
    await settle();
    assert.deepEqual(all.revisions, [r1, r2, r3, r4]);
    assert.deepEqual(noDelete.revisions, [r1, r2]);
    assert.deepEqual(single.revisions, [r1, r3]);
  });

  it('waits for a full stream before replaying more, and goes on when it drains', async () => {
    for (let i = 0; i < 1_500; i += 1) commit('/k');
    const sink = new RecordingSink();
    sink.open = false;
    const watcher = hub.add(spec({ key: Buffer.from('/k'), start_revision: '2' }), sink);
    await settle();
    assert.deepEqual(sink.revisions, []);
    sink.open = true;
    hub.resume();
    await settle();
    await settle();
    assert.equal(sink.revisions.length, 1_500);
    assert.ok(!('compactRevision' in watcher) && watcher.synced);
  });

  it('refuses a start older than the log, and cancels watchers a re-list leaves behind', async () => {
    commit('/k');
    commit('/k');
    await store.pruneLog(3);
    const old = hub.add(spec({ key: Buffer.from('/k'), start_revision: '2' }), new RecordingSink());
    assert.deepEqual(old, { compactRevision: 3 });

    const live = new RecordingSink();
    const future = new RecordingSink();
    hub.add(spec({ key: Buffer.from('/k') }), live);
    hub.add(spec({ key: Buffer.from('/k'), start_revision: '100' }), future);
    const previous = store.meta().revision;
    // A list at revision 50 (after a compaction past the mirror) replaces the content.
    store.beginSnapshot().commit(50, identity, 40, 'all');
    mirror.emit('relisted', 50, previous);
    assert.equal(live.compactedAt, 51, 'the live watcher missed revisions up to 50');
    assert.equal(future.compactedAt, null, 'a watcher waiting for revision 100 missed nothing');
    assert.equal(hub.size(), 1);
  });
});
