// Integration (real etcd with auth on, restored from a snapshot): a client holding a simple token issued
// before the restore. The token names the raft index of its login; the restored etcd starts a new raft log
// far below it, forgot its tokens, and holds every call carrying the old one until its log gets there, a
// watch for good (the robustness run's restore fault found a gateway's watch silent for minutes). What etcd
// will answer in the end is "invalid auth token", after which a client logs in again: the proxy answers it
// at once, whether it knew the token (the client logged in through it) or not (it started after the restore),
// and for a watch it relays to etcd (history older than its log), whose create etcd holds, once that create
// has gone unanswered for a few seconds: a new one, or one open across the restore (which the mirror, noticing
// the restore, ends as compacted, as its own watches).
// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { authClient, authenticate, enableAuth, ROOT_PASSWORD, withToken } from '../support/etcd-auth';
import { restoreEtcdFromSnapshot, saveEtcdSnapshot } from '../support/etcd-restore';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { scrape } from '../support/metrics';
import { call, rawClients } from '../support/raw-client';
import { WatchClient, type WireWatchResponse } from '../support/watch-client';

const b = (s: string): Buffer => Buffer.from(s);
const INVALID_TOKEN = 'etcdserver: invalid auth token';
/** Longer than the proxy needs (a check run into its 5 s deadline, then two looks at the members), far shorter than etcd holds. */
const ANSWER_WITHIN_MS = 20_000;

describe('a client token issued before etcd was restored from a snapshot', () => {
  let etcd: EtcdServer;
  let rootToken: string;
  const proxies: TestProxy[] = [];
  const work = mkdtempSync(join(tmpdir(), 'ecp-restored-token-'));

  const login = async (address: string): Promise<string> => {
    const client = authClient(address);
    try {
      return await authenticate(client, 'app', 'app-pw');
    } finally {
      client.close();
    }
  };
  const put = async (address: string, token: string, key: string): Promise<number> => {
    const clients = rawClients(address);
    try {
      const outcome = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b(key), value: b('v') }, { metadata: withToken(token), deadlineMs: 5_000 });
      assert.equal(outcome.error, null, outcome.error?.details);
      return Number(outcome.response?.header?.revision ?? 0);
    } finally {
      clients.close();
    }
  };
  /** `count` puts straight to etcd, 50 at a time on one connection: raft entries, fast. */
  const putMany = async (count: number): Promise<void> => {
    const clients = rawClients(etcd.clientAddress);
    try {
      for (let start = 0; start < count; start += 50) {
        const outcomes = await Promise.all(
          Array.from({ length: Math.min(50, count - start) }, (_, i) => call(clients.kv, 'Put', { key: b(`/app/before-${(start + i) % 3}`), value: b('v') }, { metadata: withToken(rootToken), deadlineMs: 5_000 })),
        );
        for (const outcome of outcomes) assert.equal(outcome.error, null, outcome.error?.details);
      }
    } finally {
      clients.close();
    }
  };
  /** The restored etcd's raft log (its commit index). */
  const raftIndex = async (): Promise<number> => {
    const clients = rawClients(etcd.clientAddress);
    try {
      return Number((await call<{ raftIndex?: string }>(clients.maintenance, 'Status', {}, { deadlineMs: 5_000 })).response?.raftIndex ?? 0);
    } finally {
      clients.close();
    }
  };
  const callWith = async (address: string, token: string, deadlineMs: number, method: 'Range' | 'Put'): Promise<{ code: number | null; details: string }> => {
    const clients = rawClients(address);
    try {
      const request = method === 'Range' ? { key: b('/app/'), range_end: b('/app0') } : { key: b('/app/written'), value: b('v') };
      const outcome = await call(clients.kv, method, request, { metadata: withToken(token), deadlineMs });
      return { code: outcome.error?.code ?? null, details: outcome.error?.details ?? '' };
    } finally {
      clients.close();
    }
  };
  const readWith = (address: string, token: string, deadlineMs: number): Promise<{ code: number | null; details: string }> => callWith(address, token, deadlineMs, 'Range');
  /** A watch of /app/ created with `token` (from `startRevision`: older than the mirror's log, the proxy relays it to etcd): its first answer. */
  const watchWith = async (address: string, token: string, timeoutMs: number, startRevision = 0): Promise<{ watch: WatchClient; first: WireWatchResponse }> => {
    const watch = new WatchClient(address, { metadata: { token } });
    watch.create({ key: b('/app/'), range_end: b('/app0'), ...(startRevision === 0 ? {} : { start_revision: startRevision }) });
    try {
      return { watch, first: await watch.next('the create answer', () => true, 0, timeoutMs) };
    } catch (error) {
      watch.close();
      throw error;
    }
  };
  const refusal = (first: WireWatchResponse): object => ({ created: first.created, canceled: first.canceled, watch_id: first.watch_id, cancel_reason: first.cancel_reason });
  /** Refused as etcd refuses a token it does not know at all (one it does not hold a call with). */
  const assertRefusedAtOnce = async (proxy: TestProxy, token: string): Promise<void> => {
    const { address } = proxy;
    // etcd's own answer at the deadline is the same words: the proxy's must come well before it.
    const refusedBy = performance.now() + ANSWER_WITHIN_MS - 5_000;
    const read = await readWith(address, token, ANSWER_WITHIN_MS);
    if (read.code !== status.UNAUTHENTICATED) {
      // What the proxy did meanwhile, for whoever reads a failure: its looks at the members, their health, its decisions.
      const samples = await scrape(proxy.url).catch(() => []);
      const told = samples.filter((s) => s.name === 'etcd_cache_proxy_auth_decisions_total' || s.name.startsWith('etcd_cache_proxy_upstream_member') || (s.name === 'etcd_cache_proxy_upstream_calls_total' && s.labels.reason !== 'mirror-watch'));
      assert.fail(`a read with the old token through ${address}: ${JSON.stringify(read)}; the proxy's metrics: ${told.map((s) => `${s.name}${JSON.stringify(s.labels)} ${s.value}`).join(', ')}`);
    }
    assert.deepEqual(read, { code: status.UNAUTHENTICATED, details: INVALID_TOKEN }, `a read with the old token through ${address}`);
    // A write goes to etcd with the client's token: the proxy looks at the token first.
    const write = await callWith(address, token, ANSWER_WITHIN_MS, 'Put');
    assert.deepEqual(write, { code: status.UNAUTHENTICATED, details: INVALID_TOKEN }, `a write with the old token through ${address}`);
    assert.ok(performance.now() < refusedBy, `the read and the write through ${address} were held nearly to their deadline`);
    const fromEtcd = await watchWith(etcd.clientAddress, 'unknown.1', 10_000);
    fromEtcd.watch.close();
    for (const startRevision of [0, 2]) {
      const { watch, first } = await watchWith(address, token, ANSWER_WITHIN_MS, startRevision);
      watch.close();
      assert.equal(first.canceled, true, `the watch from ${startRevision} with the old token: ${JSON.stringify(first)}`);
      assert.deepEqual(refusal(first), refusal(fromEtcd.first), `the watch from ${startRevision}`);
    }
  };

  before(async () => {
    etcd = await startEtcd();
    const tokens = await enableAuth(
      etcd.clientAddress,
      [
        { name: 'read-all', permissions: [{ key: '\0', rangeEnd: '\0', type: 'READ' }] },
        { name: 'app-rw', permissions: [{ key: '/app/', rangeEnd: '/app0', type: 'READWRITE' }] },
      ],
      [
        { name: 'reader', password: 'reader-pw', roles: ['read-all'] },
        { name: 'app', password: 'app-pw', roles: ['app-rw'] },
      ],
    );
    rootToken = tokens.get('root') ?? '';
    // History older than the mirror's log, which a watch from revision 2 asks for: the proxy relays such a watch to etcd.
    for (let i = 0; i < 10; i += 1) await put(etcd.clientAddress, rootToken, `/app/first-${i % 3}`);
    proxies.push(await startTestProxy([etcd.clientUrl], ['--user', 'reader:reader-pw', '--auth-refresh-interval', '2s', '--consistency-check-interval', '0']));
  });

  after(async () => {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('is refused as invalid at once by a proxy that saw its login and by one that did not, where etcd holds it; a new login works', async () => {
    const [seen] = proxies;
    assert.ok(seen !== undefined);
    await saveEtcdSnapshot(etcd, join(work, 'snapshot.db'), `root:${ROOT_PASSWORD}`);
    // Raft entries past the snapshot, so that the old token names an index the restored log stays far below for
    // the whole test: the proxies' own logins and permission reads (etcd 3.4 reads users and roles through raft)
    // add entries to it, a few hundred in a --workers run.
    await putMany(3_000);
    const oldToken = await login(seen.address);
    const before = await watchWith(seen.address, oldToken, 10_000);
    before.watch.close();
    assert.equal(before.first.canceled ?? false, false, 'the token works before the restore');
    // A watch the proxy relays to etcd, open across the restore: etcd's client (and the relay) creates it again on a
    // new stream, with the same token, and etcd holds that create.
    const relayed = await watchWith(seen.address, oldToken, 10_000, 2);
    assert.equal(relayed.first.canceled ?? false, false, 'the relayed watch works before the restore');
    await relayed.watch.next('the relayed watch to replay the history', (response) => (response.events ?? []).length > 0);
    // A read once half the refresh interval passed has the proxy check the token again, and look at etcd's raft
    // log: after the restore, what it saw of the log is past the token, and only the check running into its
    // deadline tells it the log went back.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    assert.equal((await readWith(seen.address, oldToken, 5_000)).code, null);
    await new Promise((resolve) => setTimeout(resolve, 1_000));

    await restoreEtcdFromSnapshot(etcd, join(work, 'snapshot.db'));
    const unseen = await startTestProxy([etcd.clientUrl], ['--user', 'reader:reader-pw', '--consistency-check-interval', '0']);
    proxies.push(unseen);

    // etcd itself holds a watch created with the old token: no answer at all (the divergence this test is about).
    const direct = new WatchClient(etcd.clientAddress, { metadata: { token: oldToken } });
    direct.create({ key: b('/app/'), range_end: b('/app0') });
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(direct.received.length, 0, `etcd answered the watch with the old token: ${JSON.stringify(direct.received[0]?.response)}`);
    direct.close();
    // And a write until its deadline (etcd's own answer to it, "invalid auth token", may reach the client just before its timer).
    const writeSentAt = performance.now();
    const heldWrite = await callWith(etcd.clientAddress, oldToken, 2_000, 'Put');
    const heldMs = performance.now() - writeSentAt;
    assert.ok(heldMs > 1_500 && (heldWrite.code === status.DEADLINE_EXCEEDED || heldWrite.code === status.UNAUTHENTICATED), `etcd answered the write with the old token after ${Math.round(heldMs)} ms: ${JSON.stringify(heldWrite)}`);

    await assertRefusedAtOnce(unseen, oldToken);
    await assertRefusedAtOnce(seen, oldToken);
    const cancelled = await relayed.watch.next('the relayed watch to end', (response) => response.canceled === true, 0, ANSWER_WITHIN_MS);
    relayed.watch.close();
    // The mirror notices the restore and ends it as compacted (as its own watches), or the relay resumed it first
    // and its create, held by etcd, was refused: never resumed on the restored history.
    const ended = cancelled.cancel_reason === `rpc error: code = Unauthenticated desc = ${INVALID_TOKEN}` || Number(cancelled.compact_revision ?? 0) > 0;
    assert.ok(ended, JSON.stringify(cancelled));
    // What was asserted above was the proxy's doing only while etcd's log stayed below the token's index.
    const tokenIndex = Number(oldToken.split('.')[1]);
    const reached = await raftIndex();
    assert.ok(reached < tokenIndex, `the restored etcd's log (${reached}) reached the old token's index (${tokenIndex}) during the test: raise the entries made before the login`);

    // Logged in again, the client watches and reads as before.
    for (const proxy of [seen, unseen]) {
      const newToken = await login(proxy.address);
      const { watch, first } = await watchWith(proxy.address, newToken, 10_000);
      try {
        assert.equal(first.canceled ?? false, false, `a watch with a new token through ${proxy.address}: ${JSON.stringify(first)}`);
        const revision = await put(proxy.address, newToken, '/app/after');
        await watch.next(`the put at ${revision}`, (response) => (response.events ?? []).some((event) => Number(event.kv?.mod_revision) === revision), 0, 10_000);
      } finally {
        watch.close();
      }
      assert.equal((await readWith(proxy.address, newToken, 5_000)).code, null);
    }
  });
});
