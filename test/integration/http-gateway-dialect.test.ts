// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (real etcd, plain HTTP): what the JSON gateway answers by itself
// changed from etcd 3.4 to 3.5 (error bodies, statuses, trailers, a bad first
// streaming request); the proxy answers as the etcd behind it does. One etcd,
// asked directly and through the proxy, answers the same.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { httpCall, type HttpAnswer } from '../support/http-gateway';
import { startTestProxy, type TestProxy } from '../support/proxy';

/** Status, content type, whether trailers were announced, and the body with protojson's per-build spacing taken out. */
function seen(answer: HttpAnswer): object {
  let text = answer.text;
  try {
    text = JSON.stringify(JSON.parse(text) as unknown);
  } catch {
    // not JSON: compared as written
  }
  return { status: answer.status, contentType: answer.headers['content-type'], trailer: answer.headers.trailer, text };
}

describe("the JSON gateway's own answers follow the etcd version behind the proxy", () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    await proxy.mirrored();
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  async function compare(path: string, body: string, headers: Record<string, string> = {}): Promise<void> {
    const [fromEtcd, fromProxy] = await Promise.all([httpCall(etcd.clientUrl, path, body, { headers }), httpCall(proxy.url, path, body, { headers })]);
    assert.deepEqual(seen(fromProxy), seen(fromEtcd), `${path} ${body} ${JSON.stringify(headers)}`);
  }

  it("answers an etcd error with its body, its status and its trailers, with and without TE: trailers, and a token gRPC cannot carry", async () => {
    // FailedPrecondition: 412 on etcd 3.4, 400 on 3.5; the trailers-only answer's content type as a trailer.
    await compare('/v3/auth/user/get', '{"name":""}');
    await compare('/v3/auth/user/get', '{"name":""}', { TE: 'trailers' });
    await compare('/v3/kv/range', '{"key":"YQ==","revision":"1000"}');
    // A token gRPC metadata cannot carry: 401 invalid token on etcd 3.4, 500 naming the header on 3.5.
    await compare('/v3/kv/range', '{"key":"YQ=="}', { Authorization: '\u00e9t\u00e9' });
  });

  it('answers a bad first keep-alive request as etcd does: an error on 3.4, the stream ended on 3.5', async () => {
    await compare('/v3/lease/keepalive', '{"ID":"x"}');
  });

  it('answers unknown paths and methods under /v3/ as etcd does', async () => {
    await compare('/v3/kv/nope', '{}');
    const [fromEtcd, fromProxy] = await Promise.all([etcd.clientUrl, proxy.url].map((url) => httpCall(url, '/v3/kv/range', null, { method: 'GET' })));
    assert.ok(fromEtcd !== undefined && fromProxy !== undefined);
    assert.deepEqual(seen(fromProxy), seen(fromEtcd));
  });
});
