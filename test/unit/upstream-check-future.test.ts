// Unit (temporary LMDB; a grpc-js server in this process plays the member: its Status, and its answer to a
// read of the mirror's newest put at that put's revision): the check the mirror makes before it resumes on a
// member. etcd answers a read at a revision it has not reached with "future revision", under the same gRPC
// code as "compacted"; the check took both for "compacted, nothing to compare" and resumed. A read below the
// revision the mirror logged means etcd went back (restored from a backup): the mirror is discarded.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServiceDefinition } from '@grpc/grpc-js';
import pino from 'pino';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { serviceMethods } from '../../src/etcd/proto';
import { checkUpstream } from '../../src/mirror/upstream-check';
import { openStore } from '../../src/store/store';
import type { UpstreamMember } from '../../src/upstream/pool';

const identity = { cluster_id: '1', member_id: '2', raft_term: '3' };
type Callback = (error: { code: status; details: string } | null, response?: object) => void;

describe('the check before the mirror resumes on a member (unit)', () => {
  /** What the member answers a read at a past revision: a refusal's message, or null for the key as logged. */
  let pastRead: string | null = null;
  let server: Server;
  let member: UpstreamMember;
  const dirs: string[] = [];

  before(async () => {
    server = new Server();
    server.addService({ Status: serviceMethods('etcdserverpb.Maintenance').Status } as unknown as ServiceDefinition, {
      // The member tells a revision at the mirror's: nothing looks behind until the newest put is read.
      Status: (_call: unknown, callback: Callback) => callback(null, { header: { cluster_id: '1', member_id: '2', revision: '12', raft_term: '3' }, raftIndex: '30', version: '3.4.23' }),
    });
    server.addService({ Range: serviceMethods('etcdserverpb.KV').Range } as unknown as ServiceDefinition, {
      Range: (call: { request: { revision?: string } }, callback: Callback) => {
        const header = { cluster_id: '1', member_id: '2', revision: '12', raft_term: '3' };
        if (Number(call.request.revision ?? '0') === 0) return callback(null, { header, count: '1' });
        if (pastRead !== null) return callback({ code: status.OUT_OF_RANGE, details: pastRead });
        return callback(null, { header, kvs: [{ key: Buffer.from('k'), value: Buffer.from('v10'), create_revision: '10', mod_revision: '10', version: '1' }], count: '1' });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
    );
    member = { endpoint: { url: `http://127.0.0.1:${port}` }, client: new Client(`127.0.0.1:${port}`, credentials.createInsecure()) } as unknown as UpstreamMember;
  });
  after(() => {
    member.client.close();
    server.forceShutdown();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const check = async (answer: string | null): Promise<{ discarded: number | null; revision: number }> => {
    const dir = mkdtempSync(join(tmpdir(), 'ecp-upstream-check-'));
    dirs.push(dir);
    const store = openStore(dir);
    const kv = encodeKeyValue({ key: Buffer.from('k'), value: Buffer.from('v10'), create_revision: 10, mod_revision: 10, version: 1, lease: '0' });
    store.applyEvents([encodeEvent('PUT', kv)], identity);
    pastRead = answer;
    const probe = { key: () => Buffer.from('k'), metadata: () => new Metadata(), renew: () => Promise.resolve() };
    const result = await checkUpstream(store, member, pino({ level: 'silent' }), 2_000, probe);
    return { discarded: result.discarded, revision: store.meta().revision };
  };

  it('resumes where etcd holds the newest put as logged', async () => {
    assert.deepEqual(await check(null), { discarded: null, revision: 10 });
  });

  it('resumes where etcd compacted past it (nothing to compare)', async () => {
    assert.deepEqual(await check('etcdserver: mvcc: required revision has been compacted'), { discarded: null, revision: 10 });
  });

  it('discards where etcd calls the logged revision a future one', async () => {
    assert.deepEqual(await check('etcdserver: mvcc: required revision is a future revision'), { discarded: 10, revision: 0 });
  });
});
