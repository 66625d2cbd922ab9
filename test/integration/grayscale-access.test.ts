// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd 3.4 with auth on, the JSON side): GET /grayscale
// names withheld keys only to a caller etcd would let read every grayscale
// prefix: no token 401, a token whose user may not read the prefix 403, a
// token the proxy did not see issued 403 (it cannot tell whose it is: it
// fails closed), a permitted user's or root's token 200 with the report.
// Its answers carry no CORS header (the path is the proxy's, not etcd's);
// etcd's own paths keep the ones etcd sends.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { authClient, authenticate, enableAuth } from '../support/etcd-auth';
import { b64, httpCall, type HttpAnswer } from '../support/http-gateway';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients } from '../support/raw-client';
import { untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const ROUTE = '/apisix/routes/1';
const HOSTNAME = 'edge-1';

interface Report {
  hostname: string;
  prefixes: string[];
  withheld: { key: string }[];
}

describe('GET /grayscale with auth on upstream', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let tokens: Map<string, string>;

  before(async () => {
    etcd = await startEtcd();
    const direct = rawClients(etcd.clientAddress);
    // A route this machine shows, then a version meant only for another machine: withheld here.
    assert.equal((await call(direct.kv, 'Put', { key: b(ROUTE), value: b('{"uri":"/v1"}') })).error, null);
    const canary = JSON.stringify({ uri: '/v2', annotations: { grayscale: { hostname: ['edge-2'] } } });
    assert.equal((await call(direct.kv, 'Put', { key: b(ROUTE), value: b(canary) })).error, null);
    assert.equal((await call(direct.kv, 'Put', { key: b('/other/1'), value: b('x') })).error, null);
    direct.close();
    await enableAuth(
      etcd.clientAddress,
      [
        { name: 'apisix-reader', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READ' }] },
        { name: 'other-reader', permissions: [{ key: '/other/', rangeEnd: '/other0', type: 'READ' }] },
        { name: 'routes-reader', permissions: [{ key: '/apisix/routes/', rangeEnd: '/apisix/routes0', type: 'READ' }] },
      ],
      [
        { name: 'mirror', password: 'mirror-pw', roles: ['apisix-reader'] },
        { name: 'alice', password: 'alice-pw', roles: ['apisix-reader'] },
        { name: 'bob', password: 'bob-pw', roles: ['other-reader'] },
        { name: 'carol', password: 'carol-pw', roles: ['routes-reader'] },
      ],
    );
    proxy = await startTestProxy([etcd.clientUrl], ['--user', 'mirror:mirror-pw', '--mirror-prefix', '/apisix/', '--grayscale-prefix', '/apisix/', '--grayscale-hostname', HOSTNAME]);
    await proxy.mirrored(3);
    // Logged in through the proxy, so it knows whose tokens these are.
    const viaProxy = authClient(proxy.address);
    tokens = new Map();
    for (const [name, password] of [['alice', 'alice-pw'], ['bob', 'bob-pw'], ['carol', 'carol-pw'], ['root', 'root-pw']] as const) tokens.set(name, await authenticate(viaProxy, name, password));
    viaProxy.close();
  });
  after(async () => {
    await proxy?.stop();
    await etcd?.stop();
  });

  const grayscale = (token?: string): Promise<HttpAnswer> => httpCall(proxy.url, '/grayscale', null, { headers: token === undefined ? {} : { authorization: token } });
  const noCors = (answer: HttpAnswer, what: string): void => {
    assert.equal(answer.headers['access-control-allow-origin'], undefined, what);
    assert.equal(answer.headers['access-control-allow-methods'], undefined, what);
  };

  it('answers a user who may read every grayscale prefix (and root) with the report', async () => {
    const report = await untilValue('the withheld route in the report', async () => {
      const answer = await grayscale(tokens.get('alice'));
      assert.equal(answer.status, 200, answer.text);
      const body = answer.json as Report;
      return body.withheld.length > 0 ? { answer, body } : undefined;
    });
    assert.deepEqual(report.body.withheld.map((w) => w.key), [ROUTE]);
    assert.equal(report.body.hostname, HOSTNAME);
    noCors(report.answer, 'a permitted answer');
    const root = await grayscale(tokens.get('root'));
    assert.equal(root.status, 200, root.text);
    assert.deepEqual((root.json as Report).withheld.map((w) => w.key), [ROUTE]);
  });

  it('refuses anyone else with etcd\'s JSON error body, and names no key', async () => {
    const refusals: [string, HttpAnswer, number, number, string][] = [
      ['no token', await grayscale(), 401, status.INVALID_ARGUMENT, 'etcdserver: user name is empty'],
      ['a user who may read only /other/', await grayscale(tokens.get('bob')), 403, status.PERMISSION_DENIED, 'etcdserver: permission denied'],
      ['a user who may read part of the prefix only', await grayscale(tokens.get('carol')), 403, status.PERMISSION_DENIED, 'etcdserver: permission denied'],
      [
        'a token issued by etcd directly, unknown to the proxy',
        await grayscale(await (async () => {
          const direct = authClient(etcd.clientAddress);
          try {
            return await authenticate(direct, 'alice', 'alice-pw');
          } finally {
            direct.close();
          }
        })()),
        403,
        status.PERMISSION_DENIED,
        'etcd-cache-proxy: GET /grayscale needs a token from a login through this proxy',
      ],
      ['a token no one issued', await grayscale('made-up.42'), 403, status.PERMISSION_DENIED, 'etcd-cache-proxy: GET /grayscale needs a token from a login through this proxy'],
    ];
    for (const [what, answer, httpStatus, code, message] of refusals) {
      assert.equal(answer.status, httpStatus, `${what}: ${answer.text}`);
      assert.deepEqual(answer.json, { error: message, message, code }, what);
      assert.doesNotMatch(answer.text, /routes/, what);
      noCors(answer, what);
    }
    // Not even a preflight invites a page of another origin.
    const preflight = await httpCall(proxy.url, '/grayscale', null, { method: 'OPTIONS', headers: { origin: 'http://elsewhere.example' } });
    assert.equal(preflight.status, 405);
    noCors(preflight, 'OPTIONS /grayscale');
  });

  it('keeps on etcd\'s own paths the CORS headers etcd sends', async () => {
    const body = JSON.stringify({ key: b64(ROUTE) });
    const headers = { authorization: tokens.get('alice') ?? '', origin: 'http://elsewhere.example' };
    for (const path of ['/v3/kv/range', '/version', '/health', '/nope']) {
      const [fromEtcd, fromProxy] = await Promise.all([
        httpCall(etcd.clientUrl, path, path.startsWith('/v3/') ? body : null, { headers }),
        httpCall(proxy.url, path, path.startsWith('/v3/') ? body : null, { headers }),
      ]);
      for (const name of ['access-control-allow-origin', 'access-control-allow-methods', 'access-control-allow-headers']) {
        assert.equal(fromProxy.headers[name], fromEtcd.headers[name], `${path} ${name}`);
      }
    }
    assert.equal((await httpCall(proxy.url, '/readyz', null)).headers['access-control-allow-origin'], undefined, '/readyz is the proxy\'s own');
  });
});
