// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (real etcd, differential): a progress request on a stream that holds relayed watches
// (one from revision 1, below the mirror's log; one on keys outside --mirror-prefix) on quiet ranges is
// answered as etcd answers it, promptly: the proxy asks etcd for progress on the upstream stream those
// watches ride, and answers with the revision etcd's answer proves they caught up to. Before, the
// proxy learnt that a relayed watch caught up only from its events, so on a quiet range the request went
// unanswered (after 5 s). Timing: each answer must come within 2.5 s of the request (the proxy gives up
// on one after 5 s), and before the next write is made. Every answer names no revision below a header
// the stream already sent, and no event at or below it arrives after it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { WatchClient, type WatchCreate, type WireWatchResponse } from '../support/watch-client';

/** Half the proxy's own wait for a progress answer (5 s): generous for a loaded machine, far below giving up. */
const ANSWER_WITHIN_MS = 2_500;

const isProgressAnswer = (r: WireWatchResponse): boolean => r.created !== true && r.canceled !== true && (r.events ?? []).length === 0 && r.watch_id === '-1';
const headerOf = (r: WireWatchResponse): number => Number(r.header?.revision ?? '0');

/**
 * Asks for progress and waits for the answer (within ANSWER_WITHIN_MS unless `patient`); checks that it
 * names no revision below a header sent before it, and gives the revision it names.
 */
async function askProgress(watch: WatchClient, patient = false): Promise<{ revision: number; index: number; ms: number }> {
  const from = watch.responses.length;
  const highestBefore = Math.max(0, ...watch.responses.map(headerOf));
  const asked = performance.now();
  watch.progress();
  await watch.until('the progress answer', () => watch.responses.slice(from).some(isProgressAnswer), patient ? 20_000 : ANSWER_WITHIN_MS);
  const index = from + watch.responses.slice(from).findIndex(isProgressAnswer);
  const answer = watch.received[index];
  assert.ok(answer !== undefined);
  const revision = headerOf(answer.response);
  assert.ok(revision >= highestBefore, `the answer names ${revision}, below a header the stream sent already (${highestBefore})`);
  const before = watch.responses.slice(from, index).map(headerOf);
  assert.ok(before.every((r) => r <= revision || r === 0), `responses before the answer name no revision past it: ${before.join(',')} / ${revision}`);
  return { revision, index, ms: answer.at - asked };
}

/** Every event that arrived after the answer at `index` is past the revision it named. */
function noEventAtOrBelowAfter(watch: WatchClient, index: number, revision: number): void {
  const late = watch.responses
    .slice(index + 1)
    .flatMap((r) => r.events ?? [])
    .map((e) => Number(e.kv?.mod_revision ?? '0'))
    .filter((r) => r <= revision);
  assert.deepEqual(late, [], `events at or below the answered revision ${revision} arrived after the answer`);
}

describe('a progress request on a stream with relayed watches on quiet ranges', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;

  const put = async (key: string): Promise<number> => {
    const answer = await call<{ header?: { revision?: string } }>(direct.kv, 'Put', { key: Buffer.from(key), value: Buffer.from('v') });
    assert.equal(answer.error, null);
    return Number(answer.response?.header?.revision ?? '0');
  };

  before(async () => {
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
    // Written before the proxy starts: its log begins after them, so a watch from revision 1 is relayed.
    await put('m/quiet/1');
    await put('q/1');
    await put('m/a');
    proxy = await startTestProxy([etcd.clientUrl], ['--mirror-prefix', 'm/']);
    await proxy.mirrored(4);
  });
  after(async () => {
    etcd?.signal('SIGCONT');
    direct?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  // From revision 1 below the log (relayed), from now outside the prefix (relayed), and from now on the mirror.
  const watches: WatchCreate[] = [
    { key: Buffer.from('m/quiet/'), range_end: Buffer.from('m/quiet0'), start_revision: 1 },
    { key: Buffer.from('q/'), range_end: Buffer.from('q0') },
    { key: Buffer.from('m/a') },
  ];

  it('with a mirror watch on the same stream, is answered at the revision etcd answers with', async (t) => {
    const viaEtcd = new WatchClient(etcd.clientAddress);
    const viaProxy = new WatchClient(proxy.address);
    try {
      for (const watch of [viaEtcd, viaProxy]) {
        await watch.createAll(watches);
        await watch.until('the replayed event at revision 2', () => watch.responses.some((r) => (r.events ?? []).some((e) => e.kv?.mod_revision === '2')));
      }
      // A write no watch of the streams sees: etcd's revision moves past every event they sent.
      const current = await put('m/unwatched');
      await proxy.mirrored(current);
      const fromEtcd = await askProgress(viaEtcd, true);
      const fromProxy = await askProgress(viaProxy);
      assert.equal(fromEtcd.revision, current, 'etcd answers at its current revision');
      t.diagnostic(`answered in ${Math.round(fromEtcd.ms)} ms by etcd, ${Math.round(fromProxy.ms)} ms by the proxy`);
      assert.equal(fromProxy.revision, fromEtcd.revision, 'the proxy answers as etcd does');
      // Writes on every watched range after the answers: none of their events is at or below it.
      const last = [await put('m/quiet/2'), await put('q/2'), await put('m/a')];
      for (const [watch, answer] of [[viaEtcd, fromEtcd], [viaProxy, fromProxy]] as const) {
        await watch.until('the three events after the answer', () => watch.responses.slice(answer.index + 1).flatMap((r) => r.events ?? []).length >= last.length);
        noEventAtOrBelowAfter(watch, answer.index, answer.revision);
      }
      const shape = (r: WireWatchResponse): object => ({ id: r.watch_id ?? '0', rev: headerOf(r), events: (r.events ?? []).map((e) => e.kv?.mod_revision) });
      // The replay of the watch from revision 1 and the created answer of a watch after it on the same stream come in
      // either order, from etcd as through the proxy (etcd replays an unsynced watch apart from answering creates):
      // each watch's own responses are the same and in the same order, and from the progress answer on, the whole stream.
      for (const id of ['0', '1', '2']) {
        assert.deepEqual(
          viaProxy.responses.filter((r) => (r.watch_id ?? '0') === id).map(shape),
          viaEtcd.responses.filter((r) => (r.watch_id ?? '0') === id).map(shape),
          `watch ${id}: the same responses, in the same order, as etcd sent`,
        );
      }
      assert.deepEqual(
        viaProxy.responses.slice(fromProxy.index).map(shape),
        viaEtcd.responses.slice(fromEtcd.index).map(shape),
        'from the progress answer on, the same responses, in the same order, as etcd sent',
      );
      assert.equal(fromProxy.index, fromEtcd.index, 'as many responses before the progress answer as etcd sent');
    } finally {
      viaEtcd.close();
      viaProxy.close();
    }
  });

  // etcd before 3.4.31 / 3.5.13 answers progress requests without waiting for its watchers: the proxy believes
  // such an answer only once a later one came 100 ms after it with no event between, and by then the mirror
  // watch's headers have moved past it; there this request goes unanswered, as before.
  it('with a mirror watch on the same stream whose keys are being written, is answered each time (etcd 3.4.31+, 3.5.13+)', async (t) => {
    const status = await call<{ version?: string }>(direct.maintenance, 'Status', {});
    const version = status.response?.version ?? '';
    const [major = 0, minor = 0, patch = 0] = version.split('.').map(Number);
    if (!(major > 3 || (major === 3 && (minor > 5 || (minor === 5 && patch >= 13) || (minor === 4 && patch >= 31))))) {
      t.skip(`etcd ${version} answers progress requests before its watchers caught up`);
      return;
    }
    const viaProxy = new WatchClient(proxy.address);
    let writing = true;
    const writer = (async () => {
      while (writing) await put('m/a');
    })();
    try {
      await viaProxy.createAll(watches);
      await viaProxy.until('the replayed event at revision 2', () => viaProxy.responses.some((r) => (r.events ?? []).some((e) => e.kv?.mod_revision === '2')));
      let previous = 0;
      for (let round = 0; round < 5; round += 1) {
        const answer = await askProgress(viaProxy);
        t.diagnostic(`round ${round}: the proxy answered ${answer.revision} in ${Math.round(answer.ms)} ms`);
        assert.ok(answer.revision >= previous, `round ${round}: answers do not go back (${previous} then ${answer.revision})`);
        previous = answer.revision;
      }
      writing = false;
      await writer;
      const index = viaProxy.responses.map(isProgressAnswer).lastIndexOf(true);
      await put('m/quiet/4');
      await put('q/4');
      await viaProxy.until('the events on the relayed ranges after the answers', () => viaProxy.responses.slice(index + 1).flatMap((r) => r.events ?? []).filter((e) => !(e.kv?.key ?? Buffer.alloc(0)).equals(Buffer.from('m/a'))).length >= 2);
      noEventAtOrBelowAfter(viaProxy, index, previous);
    } finally {
      writing = false;
      await writer;
      viaProxy.close();
    }
  });

  it('on a stream of only relayed watches while writes go on elsewhere, is answered each time, within what etcd had', async (t) => {
    const viaEtcd = new WatchClient(etcd.clientAddress);
    const viaProxy = new WatchClient(proxy.address);
    let writing = true;
    const written: number[] = [];
    const writer = (async () => {
      while (writing) written.push(await put('elsewhere/k'));
    })();
    try {
      for (const watch of [viaEtcd, viaProxy]) {
        await watch.createAll(watches.slice(0, 2));
        await watch.until('the replayed event at revision 2', () => watch.responses.some((r) => (r.events ?? []).some((e) => e.kv?.mod_revision === '2')));
      }
      let previous = 0;
      for (let round = 0; round < 5; round += 1) {
        for (const watch of [viaEtcd, viaProxy]) {
          const before = Math.max(0, ...written);
          const answer = await askProgress(watch, watch === viaEtcd);
          const afterAnswer = Math.max(0, ...written);
          // etcd's revision when asked, at the least (a put acknowledged is applied on this single member).
          assert.ok(answer.revision >= before, `round ${round}: answered ${answer.revision}, below etcd's revision ${before} when asked`);
          assert.ok(answer.revision <= afterAnswer + 1, `round ${round}: answered ${answer.revision}, past any revision etcd had (${afterAnswer})`);
          t.diagnostic(`round ${round}: ${watch === viaEtcd ? 'etcd' : 'the proxy'} answered ${answer.revision} in ${Math.round(answer.ms)} ms (etcd had ${before} when asked)`);
          if (watch === viaProxy) {
            assert.ok(answer.revision >= previous, `round ${round}: answers do not go back (${previous} then ${answer.revision})`);
            previous = answer.revision;
          }
        }
      }
      writing = false;
      await writer;
      const answers = viaProxy.responses.filter(isProgressAnswer);
      const lastAnswer = Math.max(...answers.map(headerOf));
      const index = viaProxy.responses.map(isProgressAnswer).lastIndexOf(true);
      await put('m/quiet/3');
      await put('q/3');
      await viaProxy.until('the two events after the answers', () => viaProxy.responses.slice(index + 1).flatMap((r) => r.events ?? []).length >= 2);
      noEventAtOrBelowAfter(viaProxy, index, lastAnswer);
    } finally {
      writing = false;
      await writer;
      viaEtcd.close();
      viaProxy.close();
    }
  });

  it('while etcd does not answer, goes unanswered rather than answered unproven, and is answered once etcd is back', async () => {
    const viaProxy = new WatchClient(proxy.address);
    try {
      await viaProxy.createAll(watches.slice(0, 2));
      await viaProxy.until('the replayed event at revision 2', () => viaProxy.responses.some((r) => (r.events ?? []).some((e) => e.kv?.mod_revision === '2')));
      await etcd.freeze();
      const from = viaProxy.responses.length;
      viaProxy.progress();
      // The proxy gives a request up after 5 s: a little longer shows it was never answered.
      await assert.rejects(
        viaProxy.until('a progress answer', () => viaProxy.responses.slice(from).some(isProgressAnswer), 6_000),
        /timed out/,
      );
      etcd.signal('SIGCONT');
      const current = await put('m/unwatched');
      const answer = await askProgress(viaProxy);
      assert.ok(answer.revision >= current, `answered ${answer.revision}, below etcd's revision ${current} when asked`);
    } finally {
      etcd.signal('SIGCONT');
      viaProxy.close();
    }
  });
});
