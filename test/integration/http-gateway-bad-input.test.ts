// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd, plain HTTP): bad input to the JSON gateway gets
// the answer etcd's own gateway gives (status, and the error body byte for
// byte: Go's JSON, base64 and type errors), measured against etcd itself
// with the proxy in front of the same etcd; what etcd would never read (a
// body past the proxy's ceiling) gets 413 in etcd's error shape; and no
// input, hand-made or generated, stops the proxy from answering.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { b64, httpCall, HttpStream, type HttpAnswer } from '../support/http-gateway';
import { until } from '../support/until';

const KEY = b64('/apisix/routes/1');

/**
 * Bodies for /v3/kv/range that etcd's gateway refuses, each for its own
 * reason, and a few odd ones it takes (a newline inside base64 padding, a
 * key spelled as an array of bytes, junk after the first JSON value).
 */
const BAD_RANGE_BODIES: readonly string[] = [
  '{"key":',
  '{',
  '[]',
  '"text"',
  '5',
  'true',
  'xyz',
  "{'key':1}",
  `{"key":"${KEY}",}`,
  `{"key" "${KEY}"}`,
  `{"key":"${KEY}" "x"}`,
  '{"key":"\\x"}',
  '{"key":"\\u12"}',
  '{"key":"a\u0001b"}',
  '{"key":tru}',
  '{"key":nul}',
  '{"key":fals}',
  '{"key":-}',
  '{"key":1.}',
  '{"key":1e}',
  '{"key":01}',
  '{"key":5}',
  '{"key":true}',
  '{"key":[]}',
  '{"key":[47,97]}',
  '{"key":[97,300]}',
  '{"key":[97,"1"]}',
  '{"key":{}}',
  '{"key":"Zm9"}',
  '{"key":"Zm9v=="}',
  '{"key":"Zm-_"}',
  '{"key":"Zm9 v"}',
  '{"key":"Z"}',
  '{"key":"=Zm9"}',
  '{"key":"Zm==Zm9v"}',
  '{"key":"Zg=\\n="}',
  `{"key":"${KEY}","limit":1.5}`,
  `{"key":"${KEY}","limit":1e3}`,
  `{"key":"${KEY}","limit":"abc"}`,
  `{"key":"${KEY}","limit":""}`,
  `{"key":"${KEY}","limit":"1 2"}`,
  `{"key":"${KEY}","limit":"\\"5\\""}`,
  `{"key":"${KEY}","limit":9223372036854775808}`,
  `{"key":"${KEY}","limit":-9223372036854775809}`,
  `{"key":"${KEY}","limit":true}`,
  `{"key":"${KEY}","limit":[1]}`,
  `{"key":"${KEY}","revision":{}}`,
  `{"key":"${KEY}","keys_only":"true"}`,
  `{"key":"${KEY}","keys_only":1}`,
  `{"key":"${KEY}","sort_order":"BAD"}`,
  `{"key":"${KEY}","sort_order":"descend"}`,
  `{"key":"${KEY}","sort_order":"2"}`,
  `{"key":"${KEY}","sort_order":true}`,
  `{"key":"${KEY}","sort_order":1.5}`,
  `{"key":"${KEY}","sort_order":99}`,
  // An unknown sort_target is left out: etcd 3.4.23 dereferences a nil sorter and dies on it.
  `{"key":"${KEY}","range_end":"AA==","rangeEnd":"!"}`,
  `{"key":"${KEY}","revision":"-5"}`,
  `{"key":""}`,
  '',
  '   ',
  'null',
  `{"key":"${KEY}"} and then junk`,
  `{"key":"${KEY}","rangeEnd":"AA==","range_end":"!"}`,
  // Go's limit of 10 000 nested objects and arrays: at it, and one past it (deep enough to overflow a recursive parser).
  `{"key":"${KEY}","x":${'['.repeat(9_999)}${']'.repeat(9_999)}}`,
  `{"key":"${KEY}","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
  '['.repeat(10_001),
  `${'{"a":'.repeat(10_001)}1${'}'.repeat(10_001)}`,
  '['.repeat(200_000),
];

/** Bad bodies for other endpoints: nested messages, repeated fields, enums inside them. */
const BAD_OTHER: readonly [string, string][] = [
  ['/v3/kv/txn', '{"compare":{}}'],
  ['/v3/kv/txn', '{"compare":[5]}'],
  ['/v3/kv/txn', `{"compare":[{"key":"${KEY}","target":"NOPE"}]}`],
  ['/v3/kv/txn', `{"success":[{"request_range":"x"}]}`],
  ['/v3/kv/txn', `{"success":[{"request_range":{"key":"!"}}]}`],
  ['/v3/kv/put', '{"key":"YQ==","value":5}'],
  ['/v3/kv/put', '{"key":"YQ==","lease":"x"}'],
  ['/v3/kv/deleterange', '{"key":"YQ==","prev_kv":"yes"}'],
  ['/v3/lease/grant', '{"TTL":"ten"}'],
  ['/v3/lease/timetolive', '{"ID":1.5}'],
  ['/v3/auth/authenticate', '{"name":5}'],
  ['/v3/maintenance/alarm', '{"action":"SOUND"}'],
  ['/v3/cluster/member/add', '{"peerURLs":"http://x"}'],
  ['/v3/kv/compaction', '{"revision":"1","physical":"true"}'],
];

/** Status and body: what a client reads. */
const seen = (answer: HttpAnswer): { status: number; contentType: string | undefined; text: string } => ({ status: answer.status, contentType: answer.headers['content-type'], text: answer.text });

/** A small deterministic generator, so a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

/** A valid Range body, mangled: bytes dropped, repeated, swapped for JSON punctuation or odd characters. */
function mangled(next: () => number): string {
  const valid = `{"key":"${KEY}","range_end":"${b64('/apisix0')}","limit":"10","sort_order":"ASCEND","keys_only":false,"revision":0}`;
  const alphabet = ['{', '}', '[', ']', ':', ',', '"', '\\', '-', '0', '9', 'e', '.', ' ', '=', '+', '/', 'A', 'n', 't', 'f', '\u00e9', '\u2028', '\u0000', '\t'];
  const chars = [...valid];
  const edits = 1 + Math.floor(next() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(next() * chars.length);
    const kind = next();
    if (kind < 0.3) chars.splice(at, 1);
    else if (kind < 0.5) chars.splice(at, 0, chars[at] ?? '');
    else chars[at] = alphabet[Math.floor(next() * alphabet.length)] ?? '';
  }
  return chars.join('');
}

describe('bad input to the HTTP/JSON gateway', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;

  before(async () => {
    etcd = await startEtcd();
    await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${KEY}","value":"${b64('r1')}"}`);
    proxy = await startTestProxy([etcd.clientUrl]);
    await proxy.mirrored(2);
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  async function compare(path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<HttpAnswer> {
    const [fromEtcd, fromProxy] = await Promise.all([httpCall(etcd.clientUrl, path, body, { headers }), httpCall(proxy.url, path, body, { headers })]);
    assert.ok(fromEtcd !== undefined && fromProxy !== undefined);
    assert.deepEqual(seen(fromProxy), seen(fromEtcd), `${path} ${String(body).slice(0, 200)}`);
    return fromProxy;
  }

  it('answers malformed JSON, wrong types and bad base64 with etcd’s status and error body', async () => {
    for (const body of BAD_RANGE_BODIES) {
      const answer = await compare('/v3/kv/range', body);
      if (answer.status !== 200) assert.deepEqual(Object.keys(answer.json as object), ['error', 'message', 'code'], body);
    }
    for (const [path, body] of BAD_OTHER) await compare(path, body);
  });

  it('answers bad request headers as etcd does', async () => {
    for (const timeout of ['x', '5', '5Q', '1.5S', '99999999999999999999S']) await compare('/v3/kv/range', `{"key":"${KEY}"}`, { 'Grpc-Timeout': timeout });
    await compare('/v3/kv/range', `{"key":"${KEY}"}`, { 'Grpc-Timeout': '10S' });
    await compare('/v3/kv/range', `{"key":"${KEY}"}`, { 'Content-Type': 'text/plain' });
    // A token outside printable ASCII cannot travel as gRPC metadata: refused as etcd refuses it, not dropped.
    const answer = await compare('/v3/kv/range', `{"key":"${KEY}"}`, { Authorization: '\u00e9t\u00e9' });
    assert.equal(answer.status, 401);
  });

  it('answers unknown paths and methods as etcd does', async () => {
    for (const path of ['/v3/kv/nope', '/v3/', '/v3/kv/range/', '/v3/kv/range:verb', '/v3alpha/kv/range', '/v2/keys/a', '/', '/v3beta/nope']) await compare(path, '{}');
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const [fromEtcd, fromProxy] = await Promise.all([httpCall(etcd.clientUrl, '/v3/kv/put', '{}', { method }), httpCall(proxy.url, '/v3/kv/put', '{}', { method })]);
      assert.ok(fromEtcd !== undefined && fromProxy !== undefined);
      assert.deepEqual(seen(fromProxy), seen(fromEtcd), method);
    }
  });

  it('answers a bad watch request as etcd does: a bad first one is an error, a bad later one ends only the sending side', async () => {
    const badFirst = await compare('/v3/watch', '{"create_request":{"key":5}}');
    assert.equal(badFirst.status, 500);
    await compare('/v3/watch', '{"create_request":');
    await compare('/v3/watch', `{"create_request":${'['.repeat(200_000)}`);
    const body = `{"create_request":{"key":"${KEY}"}}{"create_request":{"key":"!!"}}{"create_request":{"key":"${KEY}"}}`;
    const streams = [new HttpStream(etcd.clientUrl, '/v3/watch', { body }), new HttpStream(proxy.url, '/v3/watch', { body })];
    try {
      await Promise.all(streams.map((stream) => stream.waitFor(1)));
      // Two writes to the watched key, one after the other: the first watch delivers each. Had the request after
      // the bad one been read, its watch's created answer and its event for the first write would come before the
      // first watch's event for the second; had the answer ended, the events would not come at all.
      for (const value of ['after-bad-1', 'after-bad-2']) {
        assert.equal((await httpCall(etcd.clientUrl, '/v3/kv/put', `{"key":"${KEY}","value":"${b64(value)}"}`)).status, 200);
        await Promise.all(streams.map((stream) => stream.waitUntil(`the event of ${value}`, (o) => JSON.stringify(o).includes(b64(value)))));
      }
      const [fromEtcd, fromProxy] = streams.map((stream) => ({ status: stream.status, objects: stream.objects.length, ended: stream.ended }));
      assert.deepEqual(fromProxy, fromEtcd);
      assert.deepEqual(fromProxy, { status: 200, objects: 3, ended: false });
    } finally {
      streams.forEach((stream) => stream.close());
    }
    // The reads compared next carry the revision: the proxy's must have the writes.
    const range = `{"key":"${KEY}"}`;
    await until('reads through the proxy to show the writes', async () => {
      const [fromEtcd, fromProxy] = await Promise.all([httpCall(etcd.clientUrl, '/v3/kv/range', range), httpCall(proxy.url, '/v3/kv/range', range)]);
      return JSON.stringify(seen(fromProxy)) === JSON.stringify(seen(fromEtcd));
    });
  });

  it("passes etcd's own answer to an oversize request through", async () => {
    const value = Buffer.alloc(3 * 1024 * 1024, 'x');
    const answer = await compare('/v3/kv/put', `{"key":"${KEY}","value":"${value.toString('base64')}"}`);
    assert.equal(answer.status, 429);
  });

  it('refuses a body past its ceiling with 413 in etcd’s error shape, declared or streamed', async () => {
    // The proxy answers before the body is over and closes the connection: the client's
    // unsent rest fails to write (EPIPE, ECONNRESET), which is expected; the answer is what counts.
    const answerTo = (headers: Record<string, string>, send: (request: ReturnType<typeof httpRequest>) => void): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer to an oversize body')), 20_000);
        const request = httpRequest(`${proxy.url}/v3/kv/put`, { method: 'POST', headers }, (response) => {
          let body = '';
          response.setEncoding('utf8').on('data', (c: string) => (body += c));
          response.on('end', () => {
            clearTimeout(timer);
            resolve({ status: response.statusCode ?? 0, body });
          });
          response.on('error', () => undefined);
        });
        request.on('error', () => undefined);
        send(request);
      });

    const declared = await answerTo({ 'content-length': String(200 * 1024 * 1024) }, (request) => request.write('{"key":"'));
    assert.equal(declared.status, 413);
    assert.deepEqual(Object.keys(JSON.parse(declared.body) as object), ['error', 'message', 'code']);

    const streamed = await answerTo({ 'transfer-encoding': 'chunked' }, (request) => {
      const chunk = Buffer.alloc(1024 * 1024, 'A');
      let sent = 0;
      request.write('{"key":"YQ==","value":"');
      const pump = (): void => {
        while (sent < 80 && !request.destroyed && request.write(chunk)) sent++;
        if (sent < 80 && !request.destroyed) request.once('drain', pump);
      };
      pump();
    });
    assert.equal(streamed.status, 413);
    assert.equal((JSON.parse(streamed.body) as { code: number }).code, 8);
    const after = await httpCall(proxy.url, '/v3/kv/range', `{"key":"${KEY}"}`);
    assert.equal(after.status, 200, 'still answering');
  });

  it('answers 400 generated mangled bodies exactly as etcd does, and keeps answering', async () => {
    const next = random(20_251_123);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const answer = await compare('/v3/kv/range', mangled(next));
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    }
    assert.ok((statuses.get(400) ?? 0) > 100, `mostly refused: ${JSON.stringify([...statuses])}`);
    const health = await httpCall(proxy.url, '/v3/kv/range', `{"key":"${KEY}"}`);
    assert.equal(health.status, 200);
  });
});
