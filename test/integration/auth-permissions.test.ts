// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
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
import { READS, ROLES, USERS } from '../support/auth-plan';
import { enableAuth, withToken } from '../support/etcd-auth';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { call, rawClients, type RawClients } from '../support/raw-client';

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
        const range = { key: Buffer.from(key), ...(rangeEnd === '' ? {} : { range_end: Buffer.from(rangeEnd) }) };
        const outcome = await call(clients.kv, 'Range', { ...range, serializable: true, count_only: true }, { metadata: withToken(token) });
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
