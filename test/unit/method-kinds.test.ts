// Unit (no network): the one table of what each etcd method does holds every
// method of every service in proto/, a method it does not name is a write,
// and the core built from it refuses every write of every service in
// read-only mode (the refusal comes before any upstream is asked), while
// reads and logins go on to the (here empty) upstream pool.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { Metadata, type StatusObject } from '@grpc/grpc-js';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createCore, type Core } from '../../src/core/core';
import type { CoreContext } from '../../src/core/context';
import type { DuplexCall, ServerStreamCall, UnaryCall } from '../../src/core/call';
import { createStreamTracker } from '../../src/core/stream-tracker';
import { ETCD_ERRORS, ProxyError } from '../../src/etcd/errors';
import { classifiedMethods, requestKind, streamKind, type MethodKind } from '../../src/etcd/method-kinds';
import { ETCD_SERVICES, etcdMethod, serviceMethods } from '../../src/etcd/proto';
import { createMetrics } from '../../src/metrics';
import type { LeaderSentinel } from '../../src/upstream/leader-sentinel';
import type { UpstreamPool } from '../../src/upstream/pool';

const encode = (service: (typeof ETCD_SERVICES)[number], method: string, request: object): Buffer => etcdMethod(service, method).requestSerialize(request);
const b = (s: string): Buffer => Buffer.from(s);

describe('the method table', () => {
  it('names every method of every service in proto/, and nothing proto/ does not have', () => {
    for (const service of ETCD_SERVICES) {
      assert.deepEqual([...classifiedMethods(service)].sort(), Object.keys(serviceMethods(service)).sort(), service);
    }
  });

  it('takes a method it does not name for a write, unary or stream', () => {
    assert.equal(requestKind('etcdserverpb.Maintenance', 'Reboot')(Buffer.alloc(0)), 'write');
    assert.equal(streamKind('etcdserverpb.Maintenance', 'Reboot'), 'write');
    // Names inherited from Object.prototype are not methods of the table.
    assert.equal(requestKind('etcdserverpb.Auth', 'toString')(Buffer.alloc(0)), 'write');
    assert.equal(requestKind('etcdserverpb.Auth', 'constructor')(Buffer.alloc(0)), 'write');
  });

  it('decides a Txn by its branches and an Alarm by its action; bytes that do not decode are a write', () => {
    const txn = requestKind('etcdserverpb.KV', 'Txn');
    assert.equal(txn(encode('etcdserverpb.KV', 'Txn', { success: [{ request_range: { key: b('k') } }] })), 'read');
    assert.equal(txn(encode('etcdserverpb.KV', 'Txn', { failure: [{ request_txn: { success: [{ request_put: { key: b('k') } }] } }] })), 'write');
    assert.equal(txn(Buffer.from([0xff, 0xff, 0xff])), 'write');
    const alarm = requestKind('etcdserverpb.Maintenance', 'Alarm');
    assert.equal(alarm(Buffer.alloc(0)), 'read', 'an absent action is GET, proto3 zero');
    assert.equal(alarm(encode('etcdserverpb.Maintenance', 'Alarm', { action: 'GET' })), 'read');
    assert.equal(alarm(encode('etcdserverpb.Maintenance', 'Alarm', { action: 'ACTIVATE', alarm: 'NOSPACE' })), 'write');
    assert.equal(alarm(encode('etcdserverpb.Maintenance', 'Alarm', { action: 'DEACTIVATE', alarm: 'NOSPACE' })), 'write');
    // field 1 (action), varint 7: an action this .proto does not name.
    assert.equal(alarm(Buffer.from([0x08, 0x07])), 'write');
    assert.equal(alarm(Buffer.from([0x0a, 0x10])), 'write', 'a truncated message');
    // A stream has no one request to decide by: a per-request method streamed would be a write.
    assert.equal(streamKind('etcdserverpb.KV', 'Txn'), 'write');
  });

  it('keeps etcd admin calls apart: the ones that only look are reads, logging in is neither', () => {
    const kinds: Record<string, MethodKind> = {};
    for (const service of ETCD_SERVICES) for (const method of classifiedMethods(service)) kinds[`${service.slice(13)}.${method}`] = requestKind(service, method)(Buffer.alloc(0));
    const reads = Object.keys(kinds).filter((name) => kinds[name] === 'read').sort();
    assert.deepEqual(reads, [
      'Auth.AuthStatus', 'Auth.RoleGet', 'Auth.RoleList', 'Auth.UserGet', 'Auth.UserList',
      'Cluster.MemberList',
      'KV.Range', 'KV.Txn',
      'Lease.LeaseLeases', 'Lease.LeaseTimeToLive',
      'Maintenance.Alarm', 'Maintenance.Hash', 'Maintenance.HashKV', 'Maintenance.Snapshot', 'Maintenance.Status',
      'Watch.Watch',
    ]);
    assert.deepEqual(Object.keys(kinds).filter((name) => kinds[name] === 'login'), ['Auth.Authenticate']);
  });
});

/** A context with no mirror and no member: whatever is not refused ends at the empty pool. */
function context(refusal: ProxyError | null): CoreContext {
  const pool = Object.assign(new EventEmitter(), { candidates: () => [], members: () => [], health: () => 'unknown' }) as unknown as UpstreamPool;
  const leader = Object.assign(new EventEmitter(), { noLeader: () => false, acquire: () => () => undefined }) as unknown as LeaderSentinel;
  return {
    pool,
    leader,
    metrics: createMetrics(new Registry()),
    log: pino({ level: 'silent' }),
    streams: createStreamTracker(),
    advertiseClientUrl: () => 'http://127.0.0.1:23790',
    writes: { admit: () => refusal, awaitMirror: () => Promise.resolve() },
    mirrorReads: null,
    mode: () => (refusal?.details === ETCD_ERRORS.readOnly.details ? 'readonly' : 'readwrite'),
    watchHub: null,
  };
}

class FakeStream extends EventEmitter {
  readonly metadata = new Metadata();
  readonly request = Buffer.alloc(0);
  getDeadline(): number {
    return Infinity;
  }
  sendMetadata(): void {}
  write(): boolean {
    return true;
  }
  end(): void {}
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
}

/** How one call of a method ends, with an empty request: its status code and message. */
async function outcome(core: Core, path: string): Promise<[number | undefined, string | undefined]> {
  const method = core.method(path);
  assert.ok(method !== undefined, path);
  if (method.kind === 'unary') {
    const call = new FakeStream() as unknown as UnaryCall;
    return new Promise((resolve) => method.handler(call, (error) => resolve([error?.code, error?.details ?? undefined])));
  }
  const stream = new FakeStream();
  const ended = new Promise<[number | undefined, string | undefined]>((resolve) => {
    stream.once('error', (error: Partial<StatusObject>) => resolve([error.code, error.details]));
  });
  if (method.kind === 'bidi') method.handler(stream as unknown as DuplexCall);
  else method.handler(stream as unknown as ServerStreamCall);
  return ended;
}

describe('the core refuses by the table', () => {
  for (const [mode, refusal] of [
    ['read-only mode', new ProxyError('readOnly')],
    ['upstream lost', new ProxyError('upstreamLost')],
  ] as const) {
    it(`${mode}: every write of every service is refused before it is forwarded; reads and logins are forwarded`, async () => {
      const core = createCore(context(refusal), { instanceId: 'test' });
      for (const service of ETCD_SERVICES) {
        for (const method of Object.keys(serviceMethods(service))) {
          const path = `/${service}/${method}`;
          const expected = requestKind(service, method)(Buffer.alloc(0)) === 'write' ? refusal : new ProxyError('noUpstream');
          assert.deepEqual(await outcome(core, path), [expected.code, expected.details], path);
        }
      }
    });
  }
});
