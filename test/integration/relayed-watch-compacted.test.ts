// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (real 3-member etcd), etcd's own TestWatchResumeCompacted with
// a proxy in front: a watch waiting from revision 1 (below the mirror's log,
// so relayed to etcd) while the member holding it upstream is stopped, the
// others take five puts and compact at 3, and the member restarts. Straight
// on that member, etcd's client (here test/support/resuming-watch.ts, which
// resumes as clientv3 does) gets the events from 2 on, or etcd's compacted
// cancel; the plain stream through the proxy must get one of those too (the
// proxy may resume on another member), never a cancel without them, which
// closes clientv3's channel.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcdCluster, type ClusterMember, type EtcdCluster } from '../support/etcd-cluster';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { ResumingWatch } from '../support/resuming-watch';
import { until } from '../support/until';
import { WatchClient, type WireEvent, type WireWatchResponse } from '../support/watch-client';

const PUTS = 5;
const COMPACT_AT = 3;

/**
 * What etcd's client may see after the restart (the member may serve the
 * events before it learns of the compaction): the events from 2 on, in order,
 * each once, and then, unless all five came, the compacted cancel.
 */
function etcdOutcome(answers: readonly WireWatchResponse[]): 'complete' | 'compacted' | 'waiting' {
  const events = answers.flatMap((a) => a.events ?? []);
  const revisions = events.map((e: WireEvent) => Number(e.kv?.mod_revision ?? '0'));
  assert.deepEqual(revisions, revisions.map((_, i) => 2 + i), `events from revision 2 on, once each: ${JSON.stringify(revisions)}`);
  const cancel = answers.find((a) => a.canceled === true);
  if (cancel !== undefined) {
    assert.equal(cancel.compact_revision, String(COMPACT_AT), `a cancel only as etcd's compacted one: ${JSON.stringify(cancel)}`);
    return 'compacted';
  }
  return revisions.length === PUTS ? 'complete' : 'waiting';
}

/** Watches a member holds (etcd's own gauge). */
async function watchers(member: ClusterMember): Promise<number> {
  const text = await (await fetch(`${member.clientUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('etcd_debugging_mvcc_watcher_total '));
  return Number(line?.split(' ')[1] ?? '0');
}

describe('a relayed watch while its member is down and the others compact', () => {
  let cluster: EtcdCluster;
  let proxy: TestProxy;
  let others: RawClients | undefined;

  before(async () => {
    cluster = await startEtcdCluster(3);
    proxy = await startTestProxy([cluster.members[0]?.clientUrl ?? '']);
    await proxy.mirrored();
  });
  after(async () => {
    others?.close();
    await proxy?.stop();
    await cluster?.stop();
  });

  it('gets the events from 2 or the compacted cancel after the member restarts, as etcd gives them', async () => {
    const create = { key: Buffer.from('foo'), start_revision: 1 };
    const proxied = new WatchClient(proxy.address);
    let direct: ResumingWatch | null = null;
    try {
      // The proxy learns every member and relays to any: the member to stop is the one holding the relayed watch.
      const before = await Promise.all(cluster.members.map(watchers));
      await proxied.createAll([create]);
      let member: ClusterMember | undefined;
      await until('a member to hold the relayed watch', async () => {
        const now = await Promise.all(cluster.members.map(watchers));
        member = cluster.members.find((_, i) => (now[i] ?? 0) > (before[i] ?? 0));
        return member !== undefined;
      });
      assert.ok(member !== undefined);
      const other = cluster.members.find((m) => m !== member);
      assert.ok(other !== undefined);
      const writer = rawClients(other.clientAddress);
      others = writer;
      const resuming = new ResumingWatch(member.clientAddress, create);
      direct = resuming;
      await resuming.until('the created answer', () => resuming.answers.some((a) => a.created === true));

      await member.stop();
      for (let i = 0; i < PUTS; i += 1) {
        await until('a put through another member', async () => (await call(writer.kv, 'Put', { key: Buffer.from('foo'), value: Buffer.from('bar') }, { deadlineMs: 3_000 })).error === null);
      }
      const compacted = await call(writer.kv, 'Compact', { revision: String(COMPACT_AT), physical: true });
      assert.equal(compacted.error, null);
      await member.restart();

      const done = (answers: readonly WireWatchResponse[]): boolean => answers.some((a) => a.canceled === true) || answers.flatMap((a) => a.events ?? []).length >= PUTS;
      await resuming.until("etcd's own outcome", () => done(resuming.answers));
      await proxied.until("the proxy's outcome", () => done(proxied.responses), 20_000);
      assert.notEqual(etcdOutcome(resuming.answers.filter((a) => a.created !== true)), 'waiting');
      assert.notEqual(etcdOutcome(proxied.responses.filter((a) => a.created !== true)), 'waiting');
      assert.equal(proxied.ended, null, 'the stream through the proxy stays open');
    } finally {
      direct?.close();
      proxied.close();
    }
  });
});
