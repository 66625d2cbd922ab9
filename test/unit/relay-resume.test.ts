// Unit (no network): a relayed watch whose upstream stream fails is created
// again upstream from the first revision its members were not sent in full,
// and its members see nothing of it: no second created answer, no event twice,
// no gap, half a fragmented revision dropped and sent again whole; a
// compaction meanwhile reaches them as etcd's compacted cancel; a failure etcd's
// client would not ride out (no leader) ends them as before.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WireWatchResponse } from '../../src/etcd/wire';
import { RelayLink, type WatchCreator } from '../../src/watch/relay-link';
import type { UpstreamWatchListener } from '../../src/watch/relay-stream';
import { SharedWatch, type RelayMember } from '../../src/watch/shared-watch';
import type { WireWatchCreateRequest } from '../../src/watch/watch-spec';
import { until } from '../support/until';

interface Created {
  readonly listener: UpstreamWatchListener;
  readonly request: WireWatchCreateRequest;
  cancelled: boolean;
}

/** Upstream streams that record every create made on them. */
function upstream(): { creates: Created[]; creator: () => WatchCreator } {
  const creates: Created[] = [];
  return {
    creates,
    creator: () => ({
      create(listener, request) {
        const made: Created = { listener, request, cancelled: false };
        creates.push(made);
        return () => {
          made.cancelled = true;
        };
      },
    }),
  };
}

function member(): { sink: RelayMember; seen: WireWatchResponse[]; broken: string[] } {
  const seen: WireWatchResponse[] = [];
  const broken: string[] = [];
  return { seen, broken, sink: { deliver: (r) => seen.push(r), broken: (reason) => broken.push(reason) } };
}

const event = (revision: number): NonNullable<WireWatchResponse['events']>[number] => ({ kv: { key: Buffer.from('k'), mod_revision: String(revision) } });
const header = (revision: number): WireWatchResponse['header'] => ({ revision: String(revision) });
const revisions = (seen: readonly WireWatchResponse[]): number[] => seen.flatMap((r) => r.events ?? []).map((e) => Number(e.kv?.mod_revision));

function relayed(startRevision: number, fragment = false): { link: RelayLink; watch: SharedWatch; creates: Created[]; m: ReturnType<typeof member>; ended: boolean[] } {
  const { creates, creator } = upstream();
  const ended: boolean[] = [];
  const watch = new SharedWatch(startRevision, fragment, () => 0, (lastLeft) => ended.push(lastLeft));
  const link = new RelayLink(watch, { key: Buffer.from('k'), start_revision: String(startRevision), fragment }, creator);
  assert.ok(link.open());
  const m = member();
  assert.notEqual(watch.join(startRevision, m.sink), null);
  return { link, watch, creates, m, ended };
}

describe('a relayed watch whose upstream stream fails', () => {
  it('is created again from the revision after the last one sent, and its member sees each event once', async () => {
    const { creates, m } = relayed(5);
    const first = creates[0];
    assert.equal(first?.request.start_revision, '5');
    first?.listener.received({ header: header(6), created: true, watch_id: '3' });
    first?.listener.received({ header: header(6), watch_id: '3', events: [event(5), event(6)] });
    first?.listener.broken('etcd-cache-proxy: upstream watch stream failed: Connection dropped', true);
    await until('the watch to be created again', () => creates.length === 2, 2_000, 5);
    const second = creates[1];
    assert.equal(second?.request.start_revision, '7');
    second?.listener.received({ header: header(8), created: true, watch_id: '0' });
    second?.listener.received({ header: header(8), watch_id: '0', events: [event(7)] });
    second?.listener.received({ header: header(8), watch_id: '0', events: [event(8)] });
    assert.equal(m.seen.filter((r) => r.created === true).length, 1, 'one created answer');
    assert.deepEqual(revisions(m.seen), [5, 6, 7, 8]);
    assert.deepEqual(m.broken, []);
  });

  it('drops half a fragmented revision and takes it again whole', async () => {
    const { creates, m } = relayed(2, true);
    creates[0]?.listener.received({ header: header(3), created: true });
    creates[0]?.listener.received({ header: header(3), events: [event(2)] });
    creates[0]?.listener.received({ header: header(3), events: [event(3)], fragment: true });
    creates[0]?.listener.broken('gone', true);
    await until('the watch to be created again', () => creates.length === 2, 2_000, 5);
    assert.equal(creates[1]?.request.start_revision, '3');
    creates[1]?.listener.received({ header: header(3), created: true });
    creates[1]?.listener.received({ header: header(3), events: [event(3)], fragment: true });
    creates[1]?.listener.received({ header: header(3), events: [event(3)] });
    assert.deepEqual(revisions(m.seen), [2, 3, 3]);
    assert.deepEqual(
      m.seen.filter((r) => (r.events?.length ?? 0) > 0).map((r) => r.fragment === true),
      [false, true, false],
      'the revision arrives whole: its fragment, then its last part',
    );
  });

  it("passes etcd's compacted cancel of the resumed watch to its member, as a cancel, not a created answer", async () => {
    const { creates, m, ended } = relayed(1);
    creates[0]?.listener.received({ header: header(1), created: true });
    creates[0]?.listener.broken('gone', true);
    await until('the watch to be created again', () => creates.length === 2, 2_000, 5);
    creates[1]?.listener.received({ header: header(9), created: true, canceled: true, compact_revision: '3' });
    const cancel = m.seen[m.seen.length - 1];
    assert.equal(cancel?.canceled, true);
    assert.equal(cancel?.created, false);
    assert.equal(cancel?.compact_revision, '3');
    assert.deepEqual(ended, [false]);
  });

  it('ends its member when etcd would end the watch (no leader), and waits no longer once the member left', async () => {
    const one = relayed(1);
    one.creates[0]?.listener.broken('etcd-cache-proxy: upstream watch stream failed: etcdserver: no leader', false);
    assert.equal(one.m.broken.length, 1);
    assert.equal(one.creates.length, 1);

    const two = relayed(1);
    two.creates[0]?.listener.received({ header: header(1), created: true });
    two.creates[0]?.listener.broken('gone', true);
    two.link.close();
    // The first create again would come within 50 ms: a wait well past it shows none comes.
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(two.creates.length, 1, 'no create after the last member left');
  });
});
