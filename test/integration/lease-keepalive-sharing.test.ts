// Integration (real etcd, raw grpc-js and the etcd3 client): every downstream
// LeaseKeepAlive stream shares one upstream stream, renewals of one lease in
// flight at once cost etcd one renewal, answers equal etcd's own, and an
// outage ends keep-alive streams with the proxy's error, never a false TTL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Etcd3, EtcdLeaseInvalidError } from 'etcd3';
import { IDLE_CLOSE_MS } from '../../src/lease/idle-close';
import { sleep, startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy, type TestProxy } from '../support/proxy';
import { KeepAliveStream } from '../support/keepalive-stream';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { until as untilShared } from '../support/until';

const until = (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> => untilShared(what, check, timeoutMs, 20);

const UPSTREAM_LOST = 'etcd-cache-proxy: upstream cluster unreachable, writes rejected';

/** One of etcd's own grpc-prometheus counters for LeaseKeepAlive. */
async function etcdKeepAliveCounter(etcd: EtcdServer, name: 'grpc_server_started_total' | 'grpc_server_msg_received_total'): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes('grpc_method="LeaseKeepAlive"'));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

async function proxyValue(proxy: TestProxy, metric: 'leaseKeepAliveUpstreamStreams' | 'leaseKeepAlivesCoalesced'): Promise<number> {
  return (await proxy.metrics[metric].get()).values[0]?.value ?? 0;
}

async function grant(clients: RawClients, ttl: number): Promise<string> {
  const granted = await call<{ ID: string }>(clients.lease, 'LeaseGrant', { TTL: String(ttl) });
  assert.equal(granted.error, null, granted.error?.details);
  const id = granted.response?.ID;
  assert.ok(id !== undefined);
  return id;
}

describe('lease keep-alive streams share one upstream keep-alive', () => {
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let direct: RawClients;
  let proxied: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl]);
    await proxy.mirrored();
    direct = rawClients(etcd.clientAddress);
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    direct?.close();
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('keeps one lease alive from 50 streams past its TTL with fewer renewals upstream than downstream', async (t) => {
    const ttl = 2;
    const id = await grant(direct, ttl);
    // Five client connections with ten streams each: the proxy sees 50 streams from several clients.
    const connections = Array.from({ length: 5 }, () => rawClients(proxy.address));
    try {
      const streams = connections.flatMap((c) => Array.from({ length: 10 }, () => new KeepAliveStream(c.lease)));
      const startedBefore = await etcdKeepAliveCounter(etcd, 'grpc_server_started_total');
      const receivedBefore = await etcdKeepAliveCounter(etcd, 'grpc_server_msg_received_total');
      const coalescedBefore = await proxyValue(proxy, 'leaseKeepAlivesCoalesced');
      const rounds = 10;
      for (let round = 1; round <= rounds; round += 1) {
        for (const stream of streams) stream.send(id);
        await until(`round ${round} answered on every stream`, () => streams.every((s) => s.replies.length >= round));
        await sleep(400);
      }
      const sent = rounds * streams.length;
      assert.equal(await proxyValue(proxy, 'leaseKeepAliveUpstreamStreams'), 1);
      for (const stream of streams) {
        assert.equal(stream.ended, null);
        assert.equal(stream.replies.length, rounds);
        for (const { reply } of stream.replies) {
          assert.equal(reply.ID, id);
          assert.equal(reply.TTL, String(ttl));
        }
      }
      // More than twice the TTL has passed: only the keep-alives kept it.
      const left = await call<{ TTL: string }>(direct.lease, 'LeaseTimeToLive', { ID: id });
      assert.ok(Number(left.response?.TTL) > 0, `lease ttl ${left.response?.TTL}`);

      const upstreamStreams = (await etcdKeepAliveCounter(etcd, 'grpc_server_started_total')) - startedBefore;
      const upstreamRenewals = (await etcdKeepAliveCounter(etcd, 'grpc_server_msg_received_total')) - receivedBefore;
      const coalesced = (await proxyValue(proxy, 'leaseKeepAlivesCoalesced')) - coalescedBefore;
      t.diagnostic(`downstream: ${streams.length} streams, ${sent} keep-alives; etcd saw ${upstreamStreams} stream(s), ${upstreamRenewals} keep-alives; coalesced ${coalesced}`);
      assert.equal(upstreamStreams, 1);
      assert.ok(upstreamRenewals < sent / 2, `etcd received ${upstreamRenewals} keep-alives for ${sent} sent`);
      assert.equal(upstreamRenewals + coalesced, sent, 'every keep-alive either went upstream or joined one in flight');

      for (const stream of streams) stream.end();
      await Promise.all(streams.map((s) => s.closed()));
      for (const stream of streams) assert.equal(stream.ended?.code, status.OK);
      // The shared stream lingers for the idle delay, then goes.
      await until('the upstream keep-alive stream to close', async () => (await proxyValue(proxy, 'leaseKeepAliveUpstreamStreams')) === 0, IDLE_CLOSE_MS + 3_000);
    } finally {
      for (const c of connections) c.close();
    }
  });

  it('answers each stream once per request, in the order it asked, coalesced or not', async () => {
    const a = await grant(direct, 30);
    const b = await grant(direct, 20);
    const unknown = '123456789';
    const first = new KeepAliveStream(proxied.lease);
    const second = new KeepAliveStream(proxied.lease);
    for (const id of [a, unknown, a, b]) first.send(id);
    for (const id of [b, a, a]) second.send(id);
    await until('every answer', () => first.replies.length === 4 && second.replies.length === 3);
    assert.deepEqual(first.replies.map(({ reply }) => [reply.ID, reply.TTL]), [[a, '30'], [unknown, undefined], [a, '30'], [b, '20']]);
    assert.deepEqual(second.replies.map(({ reply }) => [reply.ID, reply.TTL]), [[b, '20'], [a, '30'], [a, '30']]);
    // a stream that goes away stops waiting; the other still gets its answers
    first.cancel();
    assert.equal((await second.ask(a)).TTL, '30');
    second.end();
    assert.equal((await second.closed()).code, status.OK);
  });

  it('gives the answers etcd gives: unknown, revoked and zero lease IDs get TTL 0, bad bytes INTERNAL', async () => {
    const revoked = await grant(direct, 60);
    assert.equal((await call(direct.lease, 'LeaseRevoke', { ID: revoked })).error, null);
    const live = await grant(direct, 45);
    const fromEtcd = new KeepAliveStream(direct.lease);
    const fromProxy = new KeepAliveStream(proxied.lease);
    for (const id of ['123456789', revoked, '0', live]) {
      const expected = await fromEtcd.ask(id);
      const answered = await fromProxy.ask(id);
      assert.deepEqual(answered, expected, `lease ${id}`);
    }
    assert.equal((await fromEtcd.ask('123456789')).TTL, undefined, 'etcd answers an unknown lease with TTL 0');
    assert.equal((await fromProxy.ask(live)).TTL, '45');

    // bytes that are no LeaseKeepAliveRequest (a truncated varint)
    fromEtcd.sendBytes(Buffer.from([0x08, 0xff]));
    fromProxy.sendBytes(Buffer.from([0x08, 0xff]));
    const [etcdEnd, proxyEnd] = await Promise.all([fromEtcd.closed(), fromProxy.closed()]);
    assert.equal(etcdEnd.code, status.INTERNAL, etcdEnd.details);
    assert.equal(proxyEnd.code, status.INTERNAL, proxyEnd.details);
    assert.ok(etcdEnd.details.startsWith('grpc: failed to unmarshal the received message'), etcdEnd.details);
    assert.ok(proxyEnd.details.startsWith('grpc: failed to unmarshal the received message'), proxyEnd.details);
  });

  it('keeps leases alive for the etcd3 client, which opens one stream per lease', async () => {
    const client = new Etcd3({ hosts: proxy.url });
    try {
      const first = client.lease(2);
      const second = client.lease(2);
      let renewed = 0;
      first.on('keepaliveSucceeded', () => (renewed += 1));
      await first.put('ka/first').value('1');
      await second.put('ka/second').value('2');
      // Four more renewals (etcd3 renews a third of the TTL apart) take the leases past their 2 s TTL: both keys must still be there.
      const before = renewed;
      await until('four more keep-alives of the first lease', () => renewed >= before + 4, 20_000);
      assert.equal(await client.get('ka/first').string(), '1', 'first lease expired');
      assert.equal(await client.get('ka/second').string(), '2', 'second lease expired');
      assert.equal(await proxyValue(proxy, 'leaseKeepAliveUpstreamStreams'), 1);
      const once = await second.keepaliveOnce();
      assert.equal(once.TTL, '2');
      await first.revoke();
      await second.revoke();
      assert.equal(await client.get('ka/first').string(), null);
      // A keep-alive of a revoked lease: TTL 0, which etcd3 turns into its invalid-lease error.
      await assert.rejects(() => second.keepaliveOnce(), EtcdLeaseInvalidError);
    } finally {
      client.close();
    }
  });

  it('refuses keep-alive streams on a read-only proxy as it refuses writes', async () => {
    const readonly = await startTestProxy([etcd.clientUrl], ['--mode', 'readonly']);
    const clients = rawClients(readonly.address);
    try {
      const stream = new KeepAliveStream(clients.lease);
      stream.send('123456789');
      const ended = await stream.closed();
      assert.equal(ended.code, status.UNIMPLEMENTED);
      assert.equal(ended.details, 'etcd-cache-proxy: read-only proxy rejects writes');
      assert.equal(stream.replies.length, 0);
    } finally {
      clients.close();
      await readonly.stop();
    }
  });
});

describe('lease keep-alive streams when etcd is killed', () => {
  const upstreamTimeoutMs = 1_000;
  let etcd: EtcdServer;
  let proxy: TestProxy;
  let proxied: RawClients;

  before(async () => {
    etcd = await startEtcd();
    proxy = await startTestProxy([etcd.clientUrl], ['--upstream-timeout', `${upstreamTimeoutMs}ms`]);
    await proxy.mirrored();
    proxied = rawClients(proxy.address);
  });
  after(async () => {
    proxied?.close();
    await proxy?.stop();
    await etcd?.stop();
  });

  it('ends every keep-alive stream with the proxy UNAVAILABLE error within the upstream timeout, never with a false TTL', async () => {
    const id = await grant(proxied, 10);
    const active = Array.from({ length: 5 }, () => new KeepAliveStream(proxied.lease));
    const idle = new KeepAliveStream(proxied.lease);
    assert.equal((await idle.ask(id)).TTL, '10');
    let ticking = true;
    const ticker = (async (): Promise<void> => {
      while (ticking) {
        for (const stream of active) if (stream.ended === null) stream.send(id);
        await sleep(100);
      }
    })();
    try {
      await until('keep-alives answered', () => active.every((s) => s.replies.length >= 3));
      const killedAt = Date.now();
      etcd.signal('SIGKILL');
      const ends = await Promise.all([...active, idle].map((s) => s.closed(10_000)));
      for (const ended of ends) {
        assert.equal(ended.code, status.UNAVAILABLE, ended.details);
        assert.ok(ended.details.startsWith('etcd-cache-proxy: '), ended.details);
        // the verdict is taken on a one-second timer: up to the timeout plus one tick
        assert.ok(ended.at - killedAt <= upstreamTimeoutMs + 1_500, `ended ${ended.at - killedAt} ms after the kill`);
      }
      assert.equal(ends.at(-1)?.details, UPSTREAM_LOST, 'an idle stream ends when the upstream is declared lost');
      for (const stream of [...active, idle]) {
        const late = stream.replies.filter((r) => r.at > killedAt + 100);
        assert.deepEqual(late, [], 'a keep-alive answered after etcd died');
      }
    } finally {
      ticking = false;
      await ticker;
    }

    // While lost, a new stream is refused at once with the write refusal.
    const refusedAt = Date.now();
    const refused = new KeepAliveStream(proxied.lease);
    refused.send(id);
    const ended = await refused.closed();
    assert.equal(ended.code, status.UNAVAILABLE);
    assert.equal(ended.details, UPSTREAM_LOST);
    assert.ok(ended.at - refusedAt < 500, `refused after ${ended.at - refusedAt} ms`);
    assert.equal(refused.replies.length, 0);
    assert.equal(await proxyValue(proxy, 'leaseKeepAliveUpstreamStreams'), 0);

    // etcd back: keep-alives through the proxy work again (etcd restores leases on restart).
    await etcd.restart();
    await until('keep-alives answered again', async () => {
      const stream = new KeepAliveStream(proxied.lease);
      try {
        return (await stream.ask(id)).TTL === '10';
      } catch {
        return false;
      } finally {
        stream.end();
      }
    }, 15_000);
  });
});
