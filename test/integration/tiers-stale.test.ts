// Integration (real etcd, one regional proxy and one edge proxy in front of
// it, each the CLI in its own process; the edge once as one process and once
// with --workers 2, where every serving process must answer the same): the edge follows the regional's stale state. While etcd
// answers, the edge's reads are not marked stale and its /readyz names its
// upstream a tier that is not stale. Once etcd is frozen (SIGSTOP), the
// regional serves its mirror marked stale, and within the regional's upstream
// timeout (plus a margin), long before the edge's own (60 s: its probes fail,
// but its own verdict is not what marks its reads here), the edge's reads (gRPC serializable and linearizable, the
// JSON gateway's range) carry the stale mark too and its /readyz says the
// tier is stale; once etcd thaws (SIGCONT) the marks go away.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startProxyProcess, type ProxyProcess } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';
import { STALE_HEADER } from '../../src/etcd/metadata';

const b = (s: string): Buffer => Buffer.from(s);
const UPSTREAM_TIMEOUT_MS = 2_000;
const EDGE_UPSTREAM_TIMEOUT_MS = 60_000;
/** What the edge may take beyond the regional's own upstream timeout and its own to pass the mark on. */
const MARGIN_MS = 3_000;

interface ReadyBody {
  readonly ready: boolean;
  readonly state?: string;
  readonly revision?: number;
  readonly upstream?: { readonly kind: string; readonly stale?: boolean; readonly revision?: number; readonly behind?: number; readonly staleForMs?: number };
}

async function readyz(proxy: ProxyProcess): Promise<{ status: number; body: ReadyBody }> {
  const response = await fetch(`http://${proxy.address}/readyz`, { signal: AbortSignal.timeout(2_000) });
  return { status: response.status, body: (await response.json()) as ReadyBody };
}

/** Whether each way of reading through `proxy` is marked stale: gRPC serializable, gRPC linearizable, JSON range. */
async function staleMarks(clients: RawClients, proxy: ProxyProcess, key: string): Promise<boolean[]> {
  const marks: boolean[] = [];
  for (const serializable of [true, false]) {
    const answer = await call<{ kvs?: { value: Buffer }[] }>(clients.kv, 'Range', { key: b(key), serializable }, { deadlineMs: 5_000 });
    assert.equal(answer.error, null, answer.error?.details);
    assert.equal(answer.response?.kvs?.[0]?.value.toString(), 'v', `serializable ${serializable}: the mirror's value`);
    marks.push(answer.headers?.get(STALE_HEADER)[0] === 'true');
  }
  const json = await fetch(`http://${proxy.address}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b(key).toString('base64') }), signal: AbortSignal.timeout(5_000) });
  assert.equal(json.status, 200, await json.clone().text());
  marks.push(json.headers.get(STALE_HEADER) === 'true');
  return marks;
}

for (const workers of [null, '2'] as const) {
  describe(`tiers: an edge${workers === null ? '' : ` with --workers ${workers}`} follows its regional's stale state`, () => {
    let etcd: EtcdServer;
    let regional: ProxyProcess;
    let edge: ProxyProcess;
    let clients: RawClients;
    const key = 'tier-stale/k';

    before(async () => {
      etcd = await startEtcd();
      regional = await startProxyProcess([etcd.clientUrl], ['--upstream-timeout', `${UPSTREAM_TIMEOUT_MS}ms`]);
      // The edge's own timeout is far longer: what marks its reads is the regional's word, not its own verdict.
      edge = await startProxyProcess([`http://${regional.address}`], ['--upstream-timeout', `${EDGE_UPSTREAM_TIMEOUT_MS}ms`, ...(workers === null ? [] : ['--workers', workers])]);
      clients = rawClients(edge.address);
    });
    after(async () => {
      clients?.close();
      await edge?.stop();
      await regional?.stop();
      if (etcd?.running()) etcd.signal('SIGCONT');
      await etcd?.stop();
    });

    it('is fresh while etcd answers, stale through the tier while etcd is frozen, fresh again after', async () => {
      const put = await call<{ header?: { revision?: string } }>(clients.kv, 'Put', { key: b(key), value: b('v') }, { deadlineMs: 5_000 });
      assert.equal(put.error, null, put.error?.details);
      const revision = Number(put.response?.header?.revision);
      const synced = await untilValue('the edge synced at the write, its upstream known as a tier', async () => {
        const answer = await readyz(edge);
        return answer.body.state === 'synced' && answer.body.revision === revision && answer.body.upstream?.kind === 'tier' ? answer : undefined;
      });
      assert.equal(synced.status, 200);
      assert.equal(synced.body.upstream?.stale, false, JSON.stringify(synced.body));
      assert.deepEqual(await staleMarks(clients, edge, key), [false, false, false], 'fresh through the tier while etcd answers');
      // The regional's own upstream is etcd itself.
      assert.equal((await readyz(regional)).body.upstream?.kind, 'etcd');

      await etcd.freeze();
      const frozenAt = Date.now();
      try {
        await until('the regional to serve stale', async () => (await readyz(regional)).body.state === 'stale', UPSTREAM_TIMEOUT_MS + MARGIN_MS, 100);
        let last: boolean[] = [];
        await until(
          () => `every read through the edge marked stale; last ${JSON.stringify(last)}`,
          async () => (last = await staleMarks(clients, edge, key)).every(Boolean),
          UPSTREAM_TIMEOUT_MS + MARGIN_MS,
          100,
        );
        const staleAfterMs = Date.now() - frozenAt;
        assert.ok(staleAfterMs <= UPSTREAM_TIMEOUT_MS + MARGIN_MS, `marked ${staleAfterMs} ms after the freeze`);
        // Each serving process answers the same (with --workers the connections spread over them).
        for (let i = 0; i < 4; i += 1) assert.deepEqual(await staleMarks(rawClientsOnce(edge), edge, key), [true, true, true]);
        const ready = await untilValue('the edge /readyz to say its tier is stale', async () => {
          const answer = await readyz(edge);
          return answer.body.upstream?.stale === true ? answer : undefined;
        });
        assert.equal(ready.status, 200, 'still ready: reads are answered');
        assert.equal(ready.body.state, 'synced', "the edge's own upstream timeout has not passed: the tier's word marks its reads");
        assert.equal(ready.body.upstream?.kind, 'tier');
        assert.equal(ready.body.upstream?.revision, revision, 'the newest revision heard of through the tier');
        assert.equal(ready.body.upstream?.behind, 0, 'the edge holds everything the regional has');
        assert.ok((ready.body.upstream?.staleForMs ?? -1) >= 0, JSON.stringify(ready.body));
      } finally {
        etcd.signal('SIGCONT');
      }

      await until('reads through the edge fresh again', async () => (await staleMarks(clients, edge, key)).every((mark) => !mark), 20_000, 100);
      await until('the edge /readyz fresh again', async () => {
        const { body } = await readyz(edge);
        return body.state === 'synced' && body.upstream?.kind === 'tier' && body.upstream.stale === false;
      });
    });
  });
}

/** A client on a connection of its own (with --workers, another connection may land on another process). */
function rawClientsOnce(proxy: ProxyProcess): RawClients {
  const clients = rawClients(proxy.address, undefined, { 'grpc.use_local_subchannel_pool': 1 });
  setTimeout(() => clients.close(), 10_000).unref();
  return clients;
}
