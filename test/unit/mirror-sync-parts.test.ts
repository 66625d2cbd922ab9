// Unit (no network): parts of the mirror's sync that startMirror and
// openWatchStream compose: the backoff between attempts, adopting content
// while the loop waits, and turning watch responses into deliveries.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { encodeEvent, type EncodedEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { KeyRanges } from '../../src/etcd/key-ranges';
import { openStore } from '../../src/store/store';
import { SyncBackoff } from '../../src/mirror/sync-backoff';
import { SnapshotAdoption } from '../../src/mirror/snapshot-adoption';
import { WatchDeliveries, type WatchDelivery } from '../../src/mirror/watch-deliveries';

const put = (key: string, revision: number): EncodedEvent =>
  encodeEvent('PUT', encodeKeyValue({ key: Buffer.from(key), value: Buffer.from('v'), create_revision: revision, mod_revision: revision, version: 1, lease: '0' }));
const keysOf = (delivery: WatchDelivery | undefined): string[] => (delivery?.events ?? []).map((e) => `${e.kv.key.toString()}@${e.kv.mod_revision}`);
const header = (revision: number): { revision: string } => ({ revision: String(revision) });
const RELIABLE = { kind: 'reliable' } as const;

describe('SyncBackoff (unit)', () => {
  it('waits until woken, says so while it waits, and logs a failure once until another comes', async () => {
    const lines: string[] = [];
    const delays: number[] = [];
    const backoff = new SyncBackoff(pino({ level: 'warn' }, { write: (line: string) => lines.push(line) }), (ms) => delays.push(ms));
    for (const message of ['etcd down', 'etcd down', 'another']) {
      const waited = backoff.after(new Error(message));
      assert.equal(backoff.waiting, true);
      backoff.wake();
      await waited;
      assert.equal(backoff.waiting, false);
    }
    assert.equal(delays.length, 3, 'every wait is reported');
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as { err: string }).err),
      ['etcd down', 'another'],
    );
  });
});

describe('SnapshotAdoption (unit)', () => {
  it('adopts only while the loop is idle, one at a time, and tells the revision it adopted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ecp-adoption-'));
    const store = openStore(dir);
    try {
      let idle = false;
      const adopted: Array<[number, number]> = [];
      const adoption = new SnapshotAdoption(store, pino({ level: 'silent' }), () => idle, (revision, previous) => adopted.push([revision, previous]));
      await assert.rejects(adoption.adopt(async () => ({ revision: 7 })), /syncing with etcd/);
      idle = true;
      let finish: () => void = () => undefined;
      const first = adoption.adopt(() => new Promise<{ revision: number }>((resolve) => (finish = () => resolve({ revision: 7 }))));
      assert.notEqual(adoption.underWay, null, 'the loop waits for it');
      await assert.rejects(adoption.adopt(async () => ({ revision: 8 })), /syncing with etcd/);
      finish();
      assert.deepEqual(await first, { revision: 7 });
      assert.equal(adoption.underWay, null);
      assert.deepEqual(adopted, [[7, 0]]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('WatchDeliveries (unit)', () => {
  const prefixes = KeyRanges.fromPrefixes([Buffer.from('/a/'), Buffer.from('/c/')]);

  it('over the span: drops events between the ranges, yet counts their revisions as seen', () => {
    const delivered: WatchDelivery[] = [];
    const deliveries = new WatchDeliveries(prefixes, false, 5, RELIABLE, (d) => delivered.push(d));
    assert.equal(deliveries.watched.length, 1);
    assert.equal(deliveries.created({ header: header(4), watch_id: '0', created: true }), true);
    deliveries.receive({ header: header(7), watch_id: '0' }, [put('/a/1', 5), put('/b/1', 6), put('/c/1', 7)]);
    assert.deepEqual(keysOf(delivered[0]), ['/a/1@5', '/c/1@7']);
    deliveries.receive({ header: header(8), watch_id: '0' }, [put('/b/2', 8)]);
    assert.deepEqual(keysOf(delivered[1]), []);
    assert.equal(delivered[1]?.through, 8);
  });

  it('one watch per range: created once all are, merged in revision order, and events of an unknown watch refused', () => {
    const delivered: WatchDelivery[] = [];
    const deliveries = new WatchDeliveries(prefixes, true, 5, RELIABLE, (d) => delivered.push(d));
    assert.equal(deliveries.watched.length, 2);
    assert.equal(deliveries.created({ header: header(4), watch_id: '10', created: true }), false);
    assert.equal(deliveries.created({ header: header(4), watch_id: '11', created: true }), true);
    deliveries.receive({ header: header(6), watch_id: '10' }, [put('/a/1', 6)]);
    assert.equal(delivered.length, 0, 'held until the other range says it is past 6');
    assert.equal(deliveries.hasHeld(), true);
    deliveries.receive({ header: header(7), watch_id: '11' }, [put('/c/1', 5), put('/c/2', 7)]);
    assert.deepEqual(keysOf(delivered[0]), ['/c/1@5', '/a/1@6']);
    assert.throws(() => deliveries.receive({ header: header(9), watch_id: '12' }, [put('/a/2', 9)]), /did not create/);
  });
});
