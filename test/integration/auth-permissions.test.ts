// Integration (real etcd 3.4 with auth on, differential): the proxy's model
// of etcd's read permissions (src/auth/permissions.ts) against etcd itself.
// Users with one key, one range, a prefix, an open "\0" range, two roles
// whose ranges only together cover a request, write-only, read-write, root
// and no role each read a table of keys and ranges from etcd; the model must
// permit exactly what etcd served.
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { after, before, describe, it } from 'node:test';
import { ReadPermissions, ROOT_ROLE, type KeyPermission } from '../../src/auth/permissions';
import { enableAuth, withToken, type RolePlan, type UserPlan } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { call, rawClients, type RawClients } from '../support/raw-client';

const ROLES: RolePlan[] = [
  { name: 'one-key', permissions: [{ key: 'a/1', type: 'READ' }] },
  { name: 'one-range', permissions: [{ key: 'b/1', rangeEnd: 'b/5', type: 'READ' }] },
  { name: 'prefix', permissions: [{ key: 'c/', rangeEnd: 'c0', type: 'READ' }] },
  { name: 'open', permissions: [{ key: 'd/', rangeEnd: '\0', type: 'READ' }] },
  { name: 'lower', permissions: [{ key: 'e/1', rangeEnd: 'e/3', type: 'READ' }] },
  { name: 'upper', permissions: [{ key: 'e/3', rangeEnd: 'e/6', type: 'READ' }] },
  { name: 'gap', permissions: [{ key: 'g/1', rangeEnd: 'g/3', type: 'READ' }, { key: 'g/4', rangeEnd: 'g/6', type: 'READ' }] },
  { name: 'write-only', permissions: [{ key: 'a/', rangeEnd: 'a0', type: 'WRITE' }] },
  { name: 'read-write', permissions: [{ key: 'f/', rangeEnd: 'f0', type: 'READWRITE' }, { key: 'h/x', type: 'READWRITE' }] },
];

const USERS: UserPlan[] = [
  { name: 'u-key', password: 'p1', roles: ['one-key'] },
  { name: 'u-range', password: 'p2', roles: ['one-range'] },
  { name: 'u-prefix', password: 'p3', roles: ['prefix'] },
  { name: 'u-open', password: 'p4', roles: ['open'] },
  { name: 'u-two', password: 'p5', roles: ['lower', 'upper'] },
  { name: 'u-lower', password: 'p6', roles: ['lower'] },
  { name: 'u-gap', password: 'p7', roles: ['gap'] },
  { name: 'u-write', password: 'p8', roles: ['write-only'] },
  { name: 'u-rw', password: 'p9', roles: ['read-write'] },
  { name: 'u-none', password: 'p10', roles: [] },
];

/** [key, rangeEnd]: rangeEnd '' reads one key, '\0' every key from `key` on. */
const READS: readonly (readonly [string, string])[] = [
  ['a/1', ''], ['a/2', ''], ['a/1', 'a/1\0'], ['a/', 'a0'],
  ['b/1', ''], ['b/4', ''], ['b/5', ''], ['b/1', 'b/5'], ['b/2', 'b/4'], ['b/1', 'b/6'], ['b/0', 'b/3'], ['b/4', 'b/5\0'],
  ['c/x', ''], ['c/', 'c0'], ['c/a', 'c/b'], ['c/', 'c1'], ['c', 'c0'],
  ['d/', ''], ['d/zzz', ''], ['d/', '\0'], ['d/a', '\0'], ['d/', 'e'], ['d', '\0'], ['\0', '\0'],
  ['e/1', 'e/6'], ['e/2', 'e/4'], ['e/1', 'e/7'], ['e/0', 'e/3'], ['e/3', ''], ['e/1', 'e/3'],
  ['g/1', 'g/6'], ['g/1', 'g/3'], ['g/2', 'g/5'], ['g/4', 'g/5'], ['g/3', ''],
  ['f/1', ''], ['f/', 'f0'], ['h/x', ''], ['h/x', 'h/x\0'], ['h/', 'h0'],
  ['z', ''], ['z', '\0'],
];

describe("the proxy's model of etcd's read permissions", () => {
  let etcd: EtcdServer;
  let clients: RawClients;
  let tokens: Map<string, string>;

  before(async () => {
    etcd = await startEtcd();
    clients = rawClients(etcd.clientAddress);
    tokens = await enableAuth(etcd.clientAddress, ROLES, USERS);
  });
  after(async () => {
    clients?.close();
    await etcd?.stop();
  });

  function modelOf(user: string): ReadPermissions {
    const plan = USERS.find((u) => u.name === user);
    if (user === 'root') return new ReadPermissions([], true);
    if (plan === undefined) throw new Error(user);
    const permissions: KeyPermission[] = plan.roles.flatMap((roleName) =>
      (ROLES.find((r) => r.name === roleName)?.permissions ?? []).map((p) => ({ key: Buffer.from(p.key), rangeEnd: Buffer.from(p.rangeEnd ?? ''), type: p.type })),
    );
    return new ReadPermissions(permissions, plan.roles.includes(ROOT_ROLE));
  }

  it('permits exactly the reads etcd serves, for every user and every key or range', async () => {
    const disagreements: string[] = [];
    let permitted = 0;
    for (const [user, token] of tokens) {
      const model = modelOf(user);
      for (const [key, rangeEnd] of READS) {
        const outcome = await call(clients.kv, 'Range', { key: Buffer.from(key), range_end: Buffer.from(rangeEnd), serializable: true, count_only: true }, { metadata: withToken(token) });
        if (outcome.error !== null && (outcome.error.code !== status.PERMISSION_DENIED || outcome.error.details !== 'etcdserver: permission denied')) {
          assert.fail(`${user} [${JSON.stringify(key)}, ${JSON.stringify(rangeEnd)}): ${outcome.error.details}`);
        }
        const etcdServed = outcome.error === null;
        if (etcdServed) permitted += 1;
        if (model.permits(Buffer.from(key), Buffer.from(rangeEnd)) !== etcdServed) {
          disagreements.push(`${user} [${JSON.stringify(key)}, ${JSON.stringify(rangeEnd)}): etcd ${etcdServed ? 'serves' : 'refuses'}`);
        }
      }
    }
    assert.deepEqual(disagreements, []);
    // The table is worth something only if it holds both answers many times.
    assert.ok(permitted > 40 && permitted < tokens.size * READS.length - 40, `${permitted} of ${tokens.size * READS.length} served`);
  });
});
