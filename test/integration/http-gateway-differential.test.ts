// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (two real etcds, plain HTTP): one recorded list of requests to
// etcd's HTTP/JSON gateway, sent to a fresh etcd directly (etcd's own
// gateway) and to another fresh etcd through the proxy (the proxy's gateway
// in front of its gRPC services), gets the same answers: status, content
// type and JSON body, byte for byte once what must differ between two
// clusters is normalised.
//
// What is normalised, and why:
// * header.cluster_id, member_id, raft_term, and every member ID: two
//   clusters, two identities. header.revision is not: both clusters get the
//   same writes from the same start, so revisions must match exactly.
// * Lease IDs: etcd makes them from its member ID and the clock.
// * Member list URLs: the proxy reports its own client URL for every member
//   (docs/design.md, "Members"), checked separately; peer URLs are per cluster.
// * Maintenance status and hash: database sizes, raft indexes and the
//   backend hash belong to each cluster's own disk; the version must match.
// * Remaining lease TTLs: a second may tick between the two requests.
// Everything else, including field order, int64 strings, base64 and the
// omission of zero values, is compared as the text etcd wrote.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { b64, httpCall, HttpStream, type HttpAnswer } from '../support/http-gateway';
import { untilValue } from '../support/until';

/** What one side learned while running the list (its lease ID), used to fill later requests and to normalise. */
interface SideState {
  lease: string;
}

interface Step {
  readonly name: string;
  readonly path: string;
  /** The exact body; a function gets the side's state (its lease ID). */
  readonly body: string | ((state: SideState) => string);
  /** After the answer: remember what later steps need. */
  readonly learn?: (json: Record<string, unknown>, state: SideState) => void;
}

const put = (key: string, value: string, extra = ''): string => `{"key":"${b64(key)}","value":"${b64(value)}"${extra}}`;

/** The recorded list: every KV, Lease, Cluster, Maintenance and Auth endpoint APISIX-like clients use, in both field spellings. */
const STEPS: readonly Step[] = [
  { name: 'range on an empty store', path: '/v3/kv/range', body: `{"key":"${b64('/apisix')}","range_end":"${b64('/apisix0')}"}` },
  { name: 'put', path: '/v3/kv/put', body: put('/apisix/routes/1', '{"uri":"/a"}') },
  { name: 'put with prev_kv', path: '/v3/kv/put', body: put('/apisix/routes/1', '{"uri":"/b"}', ',"prev_kv":true') },
  { name: 'put, camelCase prevKv', path: '/v3/kv/put', body: put('/apisix/routes/2', '{"uri":"/c"}', ',"prevKv":true') },
  { name: 'put of a binary key', path: '/v3/kv/put', body: `{"key":"${b64(Buffer.from([0, 0xff, 0x10]))}","value":"${b64('<&>\u2028')}"}` },
  { name: 'put of an empty value', path: '/v3/kv/put', body: `{"key":"${b64('/apisix/upstreams')}","value":""}` },
  { name: 'prefix range', path: '/v3/kv/range', body: `{"key":"${b64('/apisix')}","range_end":"${b64('/apisix0')}"}` },
  { name: 'range of one key', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/routes/1')}"}` },
  { name: 'range of a missing key (no kvs)', path: '/v3/kv/range', body: `{"key":"${b64('/nothing')}"}` },
  { name: 'range, every key from \\0', path: '/v3/kv/range', body: `{"key":"AA==","range_end":"AA=="}` },
  { name: 'range, keys_only + limit', path: '/v3/kv/range', body: `{"key":"AA==","range_end":"AA==","keys_only":true,"limit":"2"}` },
  { name: 'range, camelCase keysOnly + countOnly', path: '/v3/kv/range', body: `{"key":"AA==","rangeEnd":"AA==","countOnly":true}` },
  { name: 'range, sort by name and by number', path: '/v3/kv/range', body: `{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":2}` },
  { name: 'range, serializable', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/routes/1')}","serializable":true}` },
  { name: 'range at a past revision', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/routes/1')}","revision":2}` },
  { name: 'range at a future revision', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/routes/1')}","revision":"1000"}` },
  { name: 'range, mod revision filters', path: '/v3/kv/range', body: `{"key":"AA==","range_end":"AA==","min_mod_revision":"3","max_mod_revision":"4"}` },
  { name: 'range without a key', path: '/v3/kv/range', body: '{}' },
  { name: 'range, empty body', path: '/v3/kv/range', body: '' },
  {
    name: 'txn, compare succeeds, nested ops',
    path: '/v3/kv/txn',
    body: `{"compare":[{"key":"${b64('/apisix/routes/1')}","target":"VERSION","result":"GREATER","version":"0"}],"success":[{"request_range":{"key":"${b64('/apisix/routes/1')}"}},{"request_put":{"key":"${b64('/apisix/routes/3')}","value":"${b64('x')}","prev_kv":true}}],"failure":[{"request_delete_range":{"key":"${b64('/apisix/routes/1')}"}}]}`,
  },
  {
    name: 'txn, compare fails, camelCase ops',
    path: '/v3/kv/txn',
    body: `{"compare":[{"key":"${b64('/apisix/routes/1')}","target":"VALUE","result":"EQUAL","value":"${b64('nope')}"}],"success":[{"requestPut":{"key":"${b64('/x')}","value":"${b64('y')}"}}],"failure":[{"requestRange":{"key":"${b64('/apisix/routes/2')}"}},{"requestTxn":{}}]}`,
  },
  {
    name: 'read-only txn',
    path: '/v3/kv/txn',
    body: `{"compare":[{"key":"${b64('/apisix/routes/3')}","target":"MOD","result":"LESS","mod_revision":"100"}],"success":[{"request_range":{"key":"${b64('/apisix')}","range_end":"${b64('/apisix0')}","count_only":true}}]}`,
  },
  { name: 'delete one key with prev_kv', path: '/v3/kv/deleterange', body: `{"key":"${b64('/apisix/routes/3')}","prev_kv":true}` },
  { name: 'delete a missing key', path: '/v3/kv/deleterange', body: `{"key":"${b64('/apisix/routes/3')}"}` },
  { name: 'lease grant', path: '/v3/lease/grant', body: '{"TTL":60}', learn: (json, state) => (state.lease = String(json.ID)) },
  { name: 'put with the lease', path: '/v3/kv/put', body: (s) => `{"key":"${b64('/apisix/leased')}","value":"${b64('v')}","lease":"${s.lease}"}` },
  { name: 'range shows the lease', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/leased')}"}` },
  { name: 'lease timetolive with keys', path: '/v3/lease/timetolive', body: (s) => `{"ID":"${s.lease}","keys":true}` },
  { name: 'lease timetolive, old path', path: '/v3/kv/lease/timetolive', body: (s) => `{"ID":${s.lease}}` },
  { name: 'lease leases', path: '/v3/lease/leases', body: '{}' },
  { name: 'lease leases, old path', path: '/v3/kv/lease/leases', body: '' },
  { name: 'lease keepalive (stream, one answer)', path: '/v3/lease/keepalive', body: (s) => `{"ID":"${s.lease}"}` },
  { name: 'lease revoke', path: '/v3/lease/revoke', body: (s) => `{"ID":"${s.lease}"}` },
  { name: 'lease revoke again, old path (not found)', path: '/v3/kv/lease/revoke', body: (s) => `{"ID":"${s.lease}"}` },
  { name: 'the leased key went with it', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/leased')}"}` },
  { name: 'member list', path: '/v3/cluster/member/list', body: '{}' },
  { name: 'maintenance status', path: '/v3/maintenance/status', body: '{}' },
  { name: 'maintenance hash', path: '/v3/maintenance/hash', body: '{}' },
  { name: 'maintenance alarm list', path: '/v3/maintenance/alarm', body: '{"action":"GET"}' },
  { name: 'authenticate with auth disabled', path: '/v3/auth/authenticate', body: '{"name":"root","password":"x"}' },
  { name: 'auth user list', path: '/v3/auth/user/list', body: '{}' },
  { name: 'compaction', path: '/v3/kv/compaction', body: '{"revision":"4","physical":true}' },
  { name: 'range below the compaction', path: '/v3/kv/range', body: `{"key":"${b64('/apisix/routes/1')}","revision":"3"}` },
  { name: 'compaction below the compaction', path: '/v3/kv/compaction', body: '{"revision":"2"}' },
  { name: 'v3beta prefix', path: '/v3beta/kv/range', body: `{"key":"${b64('/apisix/routes/1')}"}` },
  { name: 'unknown path under /v3/', path: '/v3/kv/nope', body: '{}' },
  { name: 'trailing slash', path: '/v3/kv/range/', body: '{}' },
  { name: 'unknown prefix', path: '/v3alpha/kv/range', body: '{}' },
];

/** Header fields two clusters cannot share, and lease IDs, replaced by markers; the rest untouched. */
function normalise(value: unknown, state: SideState, parentKey = ''): unknown {
  if (Array.isArray(value)) return value.map((item) => normalise(item, state, parentKey));
  if (typeof value === 'string' && state.lease !== '' && value === state.lease) return '<lease>';
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (parentKey === 'header' && ['cluster_id', 'member_id', 'raft_term'].includes(key)) out[key] = '<cluster>';
    else if (parentKey === 'members' && ['ID', 'peerURLs', 'clientURLs'].includes(key)) out[key] = '<member>';
    else if (['dbSize', 'dbSizeInUse', 'leader', 'raftIndex', 'raftTerm', 'raftAppliedIndex', 'hash'].includes(key)) out[key] = '<local>';
    else if (key === 'TTL' && parentKey !== 'result' && typeof item === 'string' && Number(item) > 0 && Number(item) <= 60) out[key] = '<ttl>';
    else out[key] = normalise(item, state, key);
  }
  return out;
}

/**
 * A JSON text with Go's protojson spacing taken out: etcd 3.5 writes some
 * answers with a space after a comma or colon, chosen per build on purpose
 * so that no client relies on it. Field order and values stay as written.
 */
function sameSpacing(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text) as unknown);
  } catch {
    return text;
  }
}

/** What is compared of one answer: status, the headers a client reads, the body (normalised JSON, or the text). */
function comparable(answer: HttpAnswer, state: SideState): object {
  const lines = answer.text.split('\n').filter((line) => line !== '');
  const parsed = lines.map((line) => {
    try {
      return JSON.stringify(normalise(JSON.parse(line) as unknown, state));
    } catch {
      return line;
    }
  });
  return {
    status: answer.status,
    contentType: answer.headers['content-type'],
    grpcContentType: answer.headers['grpc-metadata-content-type'],
    cors: answer.headers['access-control-allow-origin'],
    body: parsed,
  };
}

/**
 * Sends one request. On a machine starved by parallel test files the proxy
 * may declare etcd lost for a moment and refuse a write before sending it;
 * that refusal is retried: this file tests the JSON mapping, not liveness.
 */
async function send(baseUrl: string, path: string, body: string): Promise<HttpAnswer> {
  return untilValue(
    `${baseUrl}${path} answered, not refused as a write`,
    async () => {
      const answer = await httpCall(baseUrl, path, body);
      return answer.status === 501 && answer.text.includes('writes rejected') ? undefined : answer;
    },
    15_000,
    200,
  );
}

interface WatchResponse {
  header?: { revision?: string };
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  events?: unknown[];
}

/**
 * What each watch received: consecutive event responses merged (etcd groups
 * a replay differently from live events, depending on timing), keeping the
 * last header revision; other responses as they are.
 */
function watchTranscript(results: readonly WatchResponse[], state: SideState): Record<string, unknown[]> {
  const byId: Record<string, unknown[]> = {};
  for (const result of results) {
    const id = result.watch_id ?? '0';
    const items = (byId[id] ??= []);
    const normalised = normalise(result, state) as WatchResponse;
    const isEvents = (result.events?.length ?? 0) > 0 && result.created !== true && result.canceled !== true;
    const last = items.at(-1) as { merged?: true; header?: unknown; events: unknown[] } | undefined;
    if (isEvents && last?.merged === true) items[items.length - 1] = { merged: true, header: normalised.header, events: [...last.events, ...(normalised.events ?? [])] };
    else if (isEvents) items.push({ merged: true, header: normalised.header, events: normalised.events ?? [] });
    else items.push(normalised);
  }
  return byId;
}

describe("etcd's HTTP/JSON gateway: the proxy answers as etcd's own gateway does", () => {
  let direct: EtcdServer;
  let proxied: EtcdServer;
  let proxy: TestProxy;
  let sides: { name: string; url: string; state: SideState }[];

  before(async () => {
    [direct, proxied] = await Promise.all([startEtcd(), startEtcd()]);
    proxy = await startTestProxy([proxied.clientUrl]);
    await proxy.mirrored();
    sides = [
      { name: 'etcd', url: direct.clientUrl, state: { lease: '' } },
      { name: 'proxy', url: proxy.url, state: { lease: '' } },
    ];
  });
  after(async () => {
    await proxy?.stop();
    await Promise.all([direct?.stop(), proxied?.stop()]);
  });

  it('answers every recorded request as etcd does', async () => {
    for (const step of STEPS) {
      const answers: object[] = [];
      for (const side of sides) {
        const body = typeof step.body === 'string' ? step.body : step.body(side.state);
        const answer = await send(side.url, step.path, body);
        if (step.learn !== undefined && typeof answer.json === 'object' && answer.json !== null) step.learn(answer.json as Record<string, unknown>, side.state);
        answers.push(comparable(answer, side.state));
        if (step.name === 'member list' && side.name === 'proxy') {
          const members = (answer.json as { members: { clientURLs: string[] }[] }).members;
          assert.deepEqual(members.map((m) => m.clientURLs), [[proxy.url]], 'MemberList reports the proxy as every member');
        }
      }
      assert.deepEqual(answers[1], answers[0], `${step.name}: ${step.path} ${typeof step.body === 'string' ? step.body : ''}`);
    }
  });

  it('answers the other endpoints as etcd does: /version, /health, methods, OPTIONS', async () => {
    const requests: { path: string; method: string; body: string | null }[] = [
      { path: '/version', method: 'GET', body: null },
      { path: '/version', method: 'POST', body: '{}' },
      { path: '/health', method: 'GET', body: null },
      { path: '/health', method: 'PUT', body: '' },
      { path: '/v3/kv/range', method: 'GET', body: null },
      { path: '/v3/watch', method: 'PUT', body: '{}' },
      { path: '/v3/kv/range', method: 'OPTIONS', body: null },
      { path: '/nowhere', method: 'GET', body: null },
    ];
    for (const request of requests) {
      const [fromEtcd, fromProxy] = await Promise.all(sides.map((side) => httpCall(side.url, request.path, request.body, { method: request.method })));
      assert.ok(fromEtcd !== undefined && fromProxy !== undefined);
      const pick = (a: HttpAnswer): object => ({ status: a.status, contentType: a.headers['content-type'], allow: a.headers.allow, cors: a.headers['access-control-allow-methods'], text: sameSpacing(a.text) });
      assert.deepEqual(pick(fromProxy), pick(fromEtcd), `${request.method} ${request.path}`);
    }
    const version = await httpCall(proxy.url, '/version', null);
    assert.match((version.json as { etcdcluster: string }).etcdcluster, /^3\.\d+\.0$/);
  });

  it('streams a watch as etcd does: create, replay, events, progress, cancel, compacted', async () => {
    const prefix = { key: b64('/w/'), range_end: b64('/w0') };
    const writes = [put('/w/a', '1'), put('/w/b', '2'), put('/w/a', '3')];
    // Both clusters sit at the same revision here; writes before the watch are replayed to it.
    const starts: number[] = [];
    for (const side of sides) {
      for (const write of writes) await send(side.url, '/v3/kv/put', write);
      const range = await send(side.url, '/v3/kv/range', `{"key":"${b64('/w/a')}"}`);
      starts.push(Number((range.json as { header: { revision: string } }).header.revision) - 2);
    }
    assert.equal(starts[0], starts[1]);
    const start = starts[0] ?? 0;
    // etcd answers an HTTP/1.1 request only once its body is complete, so the whole body goes at once.
    const body = [
      { create_request: { ...prefix, start_revision: String(start), prev_kv: true } },
      { create_request: { key: b64('/other'), watch_id: '7', filters: ['NOPUT'] } },
      { progress_request: {} },
      { create_request: { key: b64('/w/b'), watchId: '9', startRevision: String(start) } },
      { cancel_request: { watch_id: '7' } },
      { create_request: { ...prefix, start_revision: '2', watch_id: '11' } }, // below the compaction: canceled
    ]
      .map((request) => JSON.stringify(request))
      .join('\n');
    const streams = sides.map((side) => new HttpStream(side.url, '/v3/watch', { body }));
    try {
      // created x4, progress, canceled(7), canceled(11, compacted), replay of 3 events to watch 0 and 1 to watch 9.
      await Promise.all(streams.map((stream) => stream.waitUntil('the replay to watch 9', (o) => (o.result as WatchResponse | undefined)?.watch_id === '9' && ((o.result as WatchResponse).events?.length ?? 0) > 0)));
      await Promise.all(streams.map((stream) => stream.waitUntil('the replay to watch 0', (o) => (o.result as WatchResponse | undefined)?.watch_id === undefined && ((o.result as WatchResponse).events?.length ?? 0) > 0)));
      for (const side of sides) {
        await send(side.url, '/v3/kv/put', put('/w/c', '4', ',"prev_kv":true'));
        await send(side.url, '/v3/kv/deleterange', `{"key":"${b64('/w/a')}"}`);
        await send(side.url, '/v3/kv/put', put('/other', 'ignored by NOPUT'));
        // Last: once its event is in, anything that should not come would have come before it.
        await send(side.url, '/v3/kv/put', put('/w/z', 'marker'));
      }
      const lastRevision = async (url: string): Promise<string> => ((await httpCall(url, '/v3/kv/range', `{"key":"AA=="}`)).json as { header: { revision: string } }).header.revision;
      const [revision] = await Promise.all(sides.map((side) => lastRevision(side.url)));
      await Promise.all(
        streams.map((stream) =>
          stream.waitUntil('the marker event', (o) => {
            const result = o.result as WatchResponse | undefined;
            return result?.watch_id === undefined && (result?.events ?? []).some((e) => (e as { kv?: { key?: string } }).kv?.key === b64('/w/z'));
          }),
        ),
      );
      // Watch 11 is relayed to etcd (its start is below the mirror's log): its cancel comes on another stream than the marker.
      await Promise.all(streams.map((stream) => stream.waitUntil('the compacted cancel of watch 11', (o) => (o.result as WatchResponse | undefined)?.watch_id === '11' && (o.result as WatchResponse).canceled === true)));
      // The progress request came while watches 0 and 9 replayed. etcd 3.4 answers at once, naming a
      // revision whose events it has not sent yet (what 3.4.31 and 3.5.13 fixed); etcd 3.5.13+ holds the
      // answer back until every watcher of the stream has caught up, and 3.5.16 then never sends it on this
      // stream (measured: not within 10 s and four more writes). The proxy answers once they have caught up,
      // as etcd means to: its answer is checked here, after the replay, and left out of the comparison.
      await streams[1]?.waitUntil('the progress answer', (o) => (o.result as WatchResponse | undefined)?.watch_id === '-1');
      const transcripts = streams.map((stream, i) => watchTranscript(stream.results<WatchResponse>(), sides[i]?.state ?? { lease: '' }));
      const [fromEtcd, fromProxy] = transcripts as [Record<string, unknown[]>, Record<string, unknown[]>];
      const proxyResults = streams[1]?.results<WatchResponse>() ?? [];
      const progressAt = proxyResults.findIndex((r) => r.watch_id === '-1');
      const replayAt = proxyResults.findIndex((r) => r.watch_id === undefined && (r.events?.length ?? 0) > 0);
      const replayed = proxyResults[replayAt];
      assert.ok(progressAt > replayAt && Number(proxyResults[progressAt]?.header?.revision) >= Number(replayed?.header?.revision), 'the progress answer comes after the replay, at the revision it caught up to or later');
      delete fromProxy['-1'];
      delete fromEtcd['-1'];
      assert.deepEqual(fromProxy, fromEtcd);
      const created = streams.map((stream) => stream.results<WatchResponse>().filter((r) => r.created === true).map((r) => r.watch_id ?? '0'));
      assert.deepEqual(created[1], created[0], 'created answers in the order of the creates');
      assert.equal(streams[1]?.headers['content-type'], 'application/json');
      assert.equal(streams[1]?.headers['grpc-metadata-content-type'], 'application/grpc');
      const compacted = streams[1]?.results<WatchResponse>().find((r) => r.watch_id === '11' && r.canceled === true);
      assert.ok(compacted?.compact_revision !== undefined && compacted.canceled === true, 'a watch below the compaction is canceled with compact_revision');
      assert.ok(revision !== undefined);
    } finally {
      streams.forEach((stream) => stream.close());
    }
  });

  it('ends a keep-alive stream after answering the requests of a finished body, as etcd does', async () => {
    const results: unknown[] = [];
    for (const side of sides) {
      const grant = await send(side.url, '/v3/lease/grant', '{"TTL":30}');
      side.state.lease = String((grant.json as { ID: string }).ID);
      const stream = new HttpStream(side.url, '/v3/lease/keepalive', { body: `{"ID":"${side.state.lease}"}\n{"ID":"${side.state.lease}"}` });
      await stream.waitForEnd();
      results.push({ status: stream.status, objects: stream.objects.map((o) => normalise(o, side.state)) });
    }
    assert.deepEqual(results[1], results[0]);
  });
});
