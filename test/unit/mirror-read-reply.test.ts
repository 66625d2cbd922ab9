// Unit (temporary LMDB, fakes for everything but the store; no network): a read routed to the mirror is
// answered from the store as it is when the answer is made. A read of a past revision may wait on etcd
// (whether etcd compacted it) after its route was decided; if the store was replaced meanwhile (etcd
// restored, a list at a lower revision), the answer would be today's keys under the old revision (the
// robustness run's restore fault found one, kept in the answer cache for good). It goes to etcd instead,
// or gets etcd's error while etcd is lost.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { UnaryCall, UnaryCallback, UnaryHandler } from '../../src/core/call';
import type { CoreContext } from '../../src/core/context';
import type { RpcRef } from '../../src/core/forward';
import type { MirrorReadDeps } from '../../src/core/mirror-read-deps';
import { TierStaleness } from '../../src/upstream/tier-stale';
import { ReadReply } from '../../src/core/mirror-read-reply';
import type { ReadSpec } from '../../src/core/mirror-read-spec';
import { ResponseCache } from '../../src/core/response-cache';
import { encodeEvent } from '../../src/etcd/event-bytes';
import { encodeKeyValue } from '../../src/etcd/kv-bytes';
import { createMetrics } from '../../src/metrics';
import { openStore, type MirrorStore } from '../../src/store/store';

const identity = { cluster_id: '1', member_id: '2', raft_term: '3' };
const rpc: RpcRef = { service: 'KV', method: 'Range', path: '/etcdserverpb.KV/Range', kind: () => 'read', streamKind: 'read' };

function putUpTo(store: MirrorStore, from: number, to: number): void {
  for (let revision = from; revision <= to; revision += 1) {
    const kv = encodeKeyValue({ key: Buffer.from(`k${revision % 3}`), value: Buffer.from(`v${revision}`), create_revision: revision, mod_revision: revision, version: 1, lease: '0' });
    store.applyEvents([encodeEvent('PUT', kv)], identity);
  }
}

describe('ReadReply (unit)', () => {
  let dir: string;
  let store: MirrorStore;
  let lost: boolean;
  let forwarded: number;
  let reply: ReadReply<{ revision: number }>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ecp-read-reply-'));
    store = openStore(dir);
    lost = false;
    forwarded = 0;
    const metrics = createMetrics(new Registry());
    const deps = {
      store,
      mirror: { revision: () => store.meta().revision, authEnabled: () => false },
      liveness: { isLost: () => lost },
      tierStale: new TierStaleness(),
      cache: new ResponseCache(1024 * 1024),
      auth: { noteServed: () => undefined },
      metrics,
      log: pino({ level: 'silent' }),
    } as unknown as MirrorReadDeps;
    const spec = {
      answer: (request: { revision: number }) => Buffer.from(`keys at ${request.revision}`),
      validity: () => ({ kind: 'spans', spans: [] }),
      covered: () => true,
    } as unknown as ReadSpec<{ revision: number }>;
    const forward: UnaryHandler = (_call, callback) => {
      forwarded += 1;
      callback(null, Buffer.from('etcd'));
    };
    reply = new ReadReply({ metrics } as unknown as CoreContext, deps, rpc, spec, forward);
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const read = (revision: number): Promise<{ error: unknown; answer: string | undefined }> =>
    new Promise((resolve) => {
      const call = { metadata: new Metadata(), sendMetadata: () => undefined } as unknown as UnaryCall;
      const callback: UnaryCallback = (error, value) => resolve({ error, answer: value?.toString() });
      const decoded = { request: { revision }, id: `r${revision}`, read: true, refusal: null, revision, serializable: true };
      reply.dispatch(call, callback, decoded, { kind: 'mirror', stale: false }, performance.now());
    });

  it('answers a past revision the log still holds from the mirror', async () => {
    putUpTo(store, 2, 30);
    const answered = await read(25);
    assert.equal(answered.error, null);
    assert.match(answered.answer ?? '', /keys at 25$/, 'the mirror\'s answer, after its header');
    assert.equal(forwarded, 0);
  });

  it('sends a past revision the replaced store no longer holds to etcd, and refuses it as etcd would while etcd is lost', async () => {
    putUpTo(store, 2, 30);
    // Routed while the store held 30; meanwhile it was wiped and listed again at 12 (etcd restored).
    store.wipe();
    putUpTo(store, 2, 12);
    assert.deepEqual(await read(25), { error: null, answer: 'etcd' });
    assert.equal(forwarded, 1);
    lost = true;
    const refused = await read(25);
    assert.equal(forwarded, 1);
    assert.match(String((refused.error as { details?: string } | null)?.details), /future revision/);
  });
});
