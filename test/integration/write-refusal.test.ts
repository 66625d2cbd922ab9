// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (real etcd 3.4, raw grpc-js and the JSON gateway): read-only
// mode and a lost upstream refuse every mutating call of every service
// (KV, Lease, Cluster, Maintenance, Auth, admin calls included), each with
// a request etcd would have taken from root, and etcd's state stays as it
// was; the calls that only look (MemberList, Status, UserGet...) and logins
// still reach etcd in read-only mode.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Metadata, status, type Client } from '@grpc/grpc-js';
import { requestKind } from '../../src/etcd/method-kinds';
import { ETCD_SERVICES, serviceMethods, type EtcdServiceName } from '../../src/etcd/proto';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { authClient, enableAuth, ROOT_PASSWORD, withToken } from '../support/etcd-auth';
import { b64, httpCall } from '../support/http-gateway';
import { KeepAliveStream } from '../support/keepalive-stream';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until, untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);
const READ_ONLY = 'etcd-cache-proxy: read-only proxy rejects writes';
const UPSTREAM_LOST = 'etcd-cache-proxy: upstream cluster unreachable, writes rejected';

/** What a test knows of the cluster it writes to: ids etcd would accept in a request. */
interface Cluster {
  readonly memberId: string;
  readonly peerUrl: string;
  readonly leaseId: string;
}

type Service = 'kv' | 'lease' | 'cluster' | 'maintenance' | 'auth';
interface Sample {
  readonly service: Service;
  readonly request: object;
}

/**
 * One request per mutating unary method (two where the request decides),
 * each one etcd takes from root: forwarded, it would change the cluster.
 */
function mutatingCalls(cluster: Cluster): Record<string, Sample> {
  return {
    'KV.Put': { service: 'kv', request: { key: b('/written'), value: b('v') } },
    'KV.DeleteRange': { service: 'kv', request: { key: b('/apisix/'), range_end: b('/apisix0') } },
    'KV.Txn': { service: 'kv', request: { success: [{ request_put: { key: b('/written'), value: b('v') } }] } },
    'KV.Compact': { service: 'kv', request: { revision: '2' } },
    'Lease.LeaseGrant': { service: 'lease', request: { TTL: '600' } },
    'Lease.LeaseRevoke': { service: 'lease', request: { ID: cluster.leaseId } },
    'Cluster.MemberAdd': { service: 'cluster', request: { peerURLs: ['http://127.0.0.1:1'], isLearner: true } },
    'Cluster.MemberRemove': { service: 'cluster', request: { ID: '12345' } },
    'Cluster.MemberUpdate': { service: 'cluster', request: { ID: cluster.memberId, peerURLs: [cluster.peerUrl, 'http://127.0.0.1:2'] } },
    'Cluster.MemberPromote': { service: 'cluster', request: { ID: cluster.memberId } },
    'Maintenance.Alarm': { service: 'maintenance', request: { action: 'ACTIVATE', memberID: cluster.memberId, alarm: 'NOSPACE' } },
    'Maintenance.Alarm(DEACTIVATE)': { service: 'maintenance', request: { action: 'DEACTIVATE', memberID: cluster.memberId, alarm: 'NOSPACE' } },
    'Maintenance.Defragment': { service: 'maintenance', request: {} },
    'Maintenance.MoveLeader': { service: 'maintenance', request: { targetID: cluster.memberId } },
    'Maintenance.Downgrade': { service: 'maintenance', request: { action: 'VALIDATE', version: '3.4.0' } },
    'Auth.AuthEnable': { service: 'auth', request: {} },
    'Auth.AuthDisable': { service: 'auth', request: {} },
    'Auth.UserAdd': { service: 'auth', request: { name: 'intruder', password: 'intruder-pw' } },
    'Auth.UserDelete': { service: 'auth', request: { name: 'reader' } },
    'Auth.UserChangePassword': { service: 'auth', request: { name: 'reader', password: 'changed' } },
    'Auth.UserGrantRole': { service: 'auth', request: { user: 'reader', role: 'root' } },
    'Auth.UserRevokeRole': { service: 'auth', request: { user: 'reader', role: 'apisix-reader' } },
    'Auth.RoleAdd': { service: 'auth', request: { name: 'intruders' } },
    'Auth.RoleDelete': { service: 'auth', request: { name: 'apisix-reader' } },
    'Auth.RoleGrantPermission': { service: 'auth', request: { name: 'apisix-reader', perm: { permType: 'READWRITE', key: b('/'), range_end: b('\0') } } },
    'Auth.RoleRevokePermission': { service: 'auth', request: { role: 'apisix-reader', key: b('/apisix/'), range_end: b('/apisix0') } },
  };
}

/** Calls that only look, or log in: forwarded in read-only mode, as etcd answers them. */
const LOOKING_CALLS: Record<string, Sample> = {
  'KV.Range': { service: 'kv', request: { key: b('/apisix/'), range_end: b('/apisix0') } },
  'Lease.LeaseLeases': { service: 'lease', request: {} },
  'Cluster.MemberList': { service: 'cluster', request: {} },
  'Maintenance.Status': { service: 'maintenance', request: {} },
  'Maintenance.Hash': { service: 'maintenance', request: {} },
  'Maintenance.HashKV': { service: 'maintenance', request: {} },
  'Maintenance.Alarm(GET)': { service: 'maintenance', request: { action: 'GET' } },
  'Auth.AuthStatus': { service: 'auth', request: {} },
  'Auth.UserGet': { service: 'auth', request: { name: 'reader' } },
  'Auth.UserList': { service: 'auth', request: {} },
  'Auth.RoleGet': { service: 'auth', request: { role: 'apisix-reader' } },
  'Auth.RoleList': { service: 'auth', request: {} },
  'Auth.Authenticate': { service: 'auth', request: { name: 'reader', password: 'reader-pw' } },
};

const methodOf = (name: string): string => (name.split('.')[1] ?? '').replace(/\(.*\)$/, '');

interface Clients extends RawClients {
  readonly auth: Client;
}
function clientsOf(address: string): Clients {
  const raw = rawClients(address);
  const auth = authClient(address);
  return {
    ...raw,
    auth,
    close: () => {
      raw.close();
      auth.close();
    },
  };
}

/** Everything a refused write could have changed, read from etcd itself. */
async function clusterState(direct: Clients, token: string | null): Promise<unknown> {
  const metadata = token === null ? new Metadata() : withToken(token);
  const ask = async (client: Client, method: string, request: object): Promise<unknown> => {
    const outcome = await call<Record<string, unknown>>(client, method, request, { metadata });
    if (outcome.error !== null) return `${outcome.error.code} ${outcome.error.details}`;
    const { header: _header, ...rest } = outcome.response ?? {};
    return rest;
  };
  return {
    keys: await ask(direct.kv, 'Range', { key: b('/'), range_end: b('\0'), keys_only: false }),
    oldest: await ask(direct.kv, 'Range', { key: b('/apisix/1'), revision: '2' }),
    leases: await ask(direct.lease, 'LeaseLeases', {}),
    members: await ask(direct.cluster, 'MemberList', {}),
    alarms: await ask(direct.maintenance, 'Alarm', { action: 'GET' }),
    // Auth on or off: etcd refuses a read without a token only while it is on.
    anonymous: await (async () => {
      const outcome = await call(direct.kv, 'Range', { key: b('/apisix/1') });
      return outcome.error === null ? 'read' : outcome.error.details;
    })(),
    users: await ask(direct.auth, 'UserList', {}),
    reader: await ask(direct.auth, 'UserGet', { name: 'reader' }),
    roles: await ask(direct.auth, 'RoleList', {}),
    role: await ask(direct.auth, 'RoleGet', { role: 'apisix-reader' }),
  };
}

async function learnCluster(direct: Clients, etcd: EtcdServer, metadata: Metadata): Promise<Cluster> {
  const members = await call<{ members: { ID: string }[] }>(direct.cluster, 'MemberList', {}, { metadata });
  const lease = await call<{ ID: string }>(direct.lease, 'LeaseGrant', { TTL: '600' }, { metadata });
  assert.equal(lease.error, null, lease.error?.details);
  return { memberId: members.response?.members[0]?.ID ?? '', peerUrl: etcd.peerUrl, leaseId: lease.response?.ID ?? '' };
}

/** Every mutating call through `clients`, each refused with `expected` (code, message), none reaching etcd. */
async function assertAllRefused(clients: Clients, cluster: Cluster, metadata: Metadata, expected: readonly [number, string]): Promise<void> {
  for (const [name, sample] of Object.entries(mutatingCalls(cluster))) {
    const outcome = await call(clients[sample.service], methodOf(name), sample.request, { metadata, deadlineMs: 5_000 });
    assert.deepEqual([outcome.error?.code, outcome.error?.details], expected, name);
  }
  const keepAlive = new KeepAliveStream(clients.lease, Object.fromEntries(Object.entries(metadata.getMap()).map(([k, v]) => [k, String(v)])));
  keepAlive.send(cluster.leaseId);
  const ended = await untilValue('the keep-alive stream to end', () => Promise.resolve(keepAlive.ended ?? undefined));
  assert.deepEqual([ended.code, ended.details], expected, 'Lease.LeaseKeepAlive');
}

describe('every mutating call of every service is refused', () => {
  it('covers every write of the method table: each mutating unary method has a request above that the table calls a write', () => {
    const samples = mutatingCalls({ memberId: '1', peerUrl: 'http://127.0.0.1:1', leaseId: '1' });
    for (const service of ETCD_SERVICES) {
      for (const [method, definition] of Object.entries(serviceMethods(service))) {
        const short = `${service.slice('etcdserverpb.'.length)}.${method}`;
        if (definition.requestStream || definition.responseStream) continue; // LeaseKeepAlive: its own check below; Watch, Snapshot read
        const kind = requestKind(service, method);
        const sample = samples[short];
        if (kind(Buffer.alloc(0)) === 'write' || sample !== undefined) {
          assert.ok(sample !== undefined, `${short} is a write: add a request for it`);
          assert.equal(kind(definition.requestSerialize(sample.request)), 'write', short);
        }
      }
    }
    for (const [name, sample] of Object.entries(LOOKING_CALLS)) {
      const [service = '', method = ''] = [`etcdserverpb.${name.split('.')[0] ?? ''}`, methodOf(name)];
      const definition = serviceMethods(service as EtcdServiceName)[method];
      assert.ok(definition !== undefined, name);
      assert.notEqual(requestKind(service as EtcdServiceName, method)(definition.requestSerialize(sample.request)), 'write', name);
    }
  });

  describe('in read-only mode, with auth on and root\'s token', () => {
    let etcd: EtcdServer;
    let direct: Clients;
    let rootToken: string;
    let cluster: Cluster;
    let proxy: TestProxy;
    let clients: Clients;

    before(async () => {
      etcd = await startEtcd();
      direct = clientsOf(etcd.clientAddress);
      for (const k of ['/apisix/1', '/apisix/2', '/other/1']) assert.equal((await call(direct.kv, 'Put', { key: b(k), value: b('v') })).error, null);
      const tokens = await enableAuth(
        etcd.clientAddress,
        [{ name: 'apisix-reader', permissions: [{ key: '/apisix/', rangeEnd: '/apisix0', type: 'READ' }] }],
        [{ name: 'reader', password: 'reader-pw', roles: ['apisix-reader'] }],
      );
      rootToken = tokens.get('root') ?? '';
      cluster = await learnCluster(direct, etcd, withToken(rootToken));
      proxy = await startTestProxy([etcd.clientUrl], ['--mode', 'readonly']);
      clients = clientsOf(proxy.address);
    });
    after(async () => {
      clients?.close();
      direct?.close();
      await proxy?.stop();
      await etcd?.stop();
    });

    it('refuses each one with UNIMPLEMENTED, and etcd holds what it held', async () => {
      const before = await clusterState(direct, rootToken);
      await assertAllRefused(clients, cluster, withToken(rootToken), [status.UNIMPLEMENTED, READ_ONLY]);
      assert.deepEqual(await clusterState(direct, rootToken), before);
    });

    it('forwards the calls that only look, and logins, and answers as etcd does', async () => {
      for (const [name, sample] of Object.entries(LOOKING_CALLS)) {
        const method = methodOf(name);
        const [viaProxy, viaEtcd] = await Promise.all([
          call<Record<string, unknown>>(clients[sample.service], method, sample.request, { metadata: withToken(rootToken) }),
          call<Record<string, unknown>>(direct[sample.service], method, sample.request, { metadata: withToken(rootToken) }),
        ]);
        // etcd 3.4 has no AuthStatus (UNIMPLEMENTED): the proxy passes on whatever etcd answers.
        assert.deepEqual([viaProxy.error?.code, viaProxy.error?.details], [viaEtcd.error?.code, viaEtcd.error?.details], name);
        // What each answer lists, without the header (and without a login's token, which is new each time).
        const body = (response: Record<string, unknown> | undefined): string[] => Object.keys(response ?? {}).filter((k) => k !== 'header').sort();
        assert.deepEqual(body(viaProxy.response), body(viaEtcd.response), name);
      }
      const user = await call<{ roles: string[] }>(clients.auth, 'UserGet', { name: 'reader' }, { metadata: withToken(rootToken) });
      assert.deepEqual(user.response?.roles, ['apisix-reader']);
      const members = await call<{ members: { ID: string; peerURLs: string[] }[] }>(clients.cluster, 'MemberList', {}, { metadata: withToken(rootToken) });
      assert.deepEqual(members.response?.members.map((m) => [m.ID, m.peerURLs]), [[cluster.memberId, [etcd.peerUrl]]]);
    });

    it('answers admin writes over the JSON gateway with 501 and etcd\'s JSON error body, and forwards nothing', async () => {
      const before = await clusterState(direct, rootToken);
      const headers = { authorization: rootToken };
      for (const [path, body] of [
        ['/v3/auth/user/add', { name: 'intruder', password: 'x' }],
        ['/v3/auth/disable', {}],
        ['/v3/maintenance/defragment', {}],
        ['/v3/maintenance/alarm', { action: 'ACTIVATE', memberID: cluster.memberId, alarm: 'NOSPACE' }],
        ['/v3/cluster/member/add', { peerURLs: ['http://127.0.0.1:1'] }],
        ['/v3/kv/put', { key: b64('/written'), value: b64('v') }],
      ] as const) {
        const answer = await httpCall(proxy.url, path, JSON.stringify(body), { headers });
        assert.equal(answer.status, 501, `${path}: ${answer.text}`);
        assert.deepEqual(answer.json, { error: READ_ONLY, message: READ_ONLY, code: status.UNIMPLEMENTED }, path);
      }
      const list = await httpCall(proxy.url, '/v3/cluster/member/list', '{}', { headers });
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(await clusterState(direct, rootToken), before);
    });
  });

  describe('while the upstream is lost', () => {
    let etcd: EtcdServer;
    let direct: Clients;
    let cluster: Cluster;
    let proxy: TestProxy;
    let clients: Clients;

    before(async () => {
      etcd = await startEtcd();
      direct = clientsOf(etcd.clientAddress);
      for (const k of ['/apisix/1', '/apisix/2']) assert.equal((await call(direct.kv, 'Put', { key: b(k), value: b('v') })).error, null);
      const auth = authClient(etcd.clientAddress);
      // Users and roles to change, auth left off: every request below would be taken as it is.
      for (const [method, request] of [
        ['UserAdd', { name: 'root', password: ROOT_PASSWORD }],
        ['UserGrantRole', { user: 'root', role: 'root' }],
        ['RoleAdd', { name: 'apisix-reader' }],
        ['RoleGrantPermission', { name: 'apisix-reader', perm: { permType: 'READ', key: b('/apisix/'), range_end: b('/apisix0') } }],
        ['UserAdd', { name: 'reader', password: 'reader-pw' }],
        ['UserGrantRole', { user: 'reader', role: 'apisix-reader' }],
      ] as const) {
        assert.equal((await call(auth, method, request)).error, null, method);
      }
      auth.close();
      cluster = await learnCluster(direct, etcd, new Metadata());
      proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', '1s', '--write-reject-http-status', '429']);
      clients = clientsOf(proxy.address);
      await proxy.mirrored(3);
    });
    after(async () => {
      clients?.close();
      direct?.close();
      await proxy?.stop();
      await etcd?.stop();
    });

    it('refuses each one with UNAVAILABLE at once, the JSON gateway with the configured status, and etcd holds what it held when it returns', async () => {
      const before = await clusterState(direct, null);
      etcd.signal('SIGKILL');
      await until('the proxy to declare the upstream lost', async () => {
        const put = await call(clients.kv, 'Put', { key: b('/probe'), value: b('x') }, { deadlineMs: 500 });
        return put.error?.details === UPSTREAM_LOST;
      });
      await assertAllRefused(clients, cluster, new Metadata(), [status.UNAVAILABLE, UPSTREAM_LOST]);
      for (const path of ['/v3/auth/user/add', '/v3/maintenance/defragment']) {
        const answer = await httpCall(proxy.url, path, JSON.stringify(path.includes('user') ? { name: 'intruder', password: 'x' } : {}));
        assert.equal(answer.status, 429, `${path}: ${answer.text}`);
        assert.deepEqual(answer.json, { error: UPSTREAM_LOST, message: UPSTREAM_LOST, code: status.UNAVAILABLE }, path);
      }
      await etcd.restart();
      await until('the proxy to reach etcd again', async () => (await call(clients.cluster, 'MemberList', {}, { deadlineMs: 1_000 })).error === null);
      assert.deepEqual(await clusterState(direct, null), before);
    });
  });
});
