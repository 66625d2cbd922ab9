// Unit (no etcd: three grpc-js servers in this process play the members' Status): when the proxy takes a
// simple token for one of a raft log etcd no longer has. Only when a majority of the members tell a log
// below the token's index, twice; a minority, or members that do not answer, decide nothing; and however
// many tokens ask at once, the members are asked once per look. The restore itself, with real etcd, is
// restored-etcd-client-token.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import pino from 'pino';
import { serviceMethods } from '../../src/etcd/proto';
import { TokenLogCheck } from '../../src/auth/token-log-check';
import type { UpstreamMember, UpstreamPool } from '../../src/upstream/pool';

const maintenance$ = serviceMethods('etcdserverpb.Maintenance');

/** One member's Status: its raft index, or null for a member that does not answer. */
interface FakeMember {
  raftIndex: number | null;
  asked: number;
  server: Server;
  client: Client;
}

async function startMember(): Promise<FakeMember> {
  const member: Partial<FakeMember> & { raftIndex: number | null; asked: number } = { raftIndex: 0, asked: 0 };
  const server = new Server();
  server.addService({ Status: maintenance$.Status } as unknown as ServiceDefinition, {
    Status: (_call: unknown, callback: (error: { code: number; details: string } | null, response?: object) => void) => {
      member.asked += 1;
      // A member that does not answer: the call runs into its deadline.
      if (member.raftIndex === null) return;
      callback(null, { raftIndex: String(member.raftIndex), version: '3.4.23' });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
  );
  return Object.assign(member, { server, client: new Client(`127.0.0.1:${port}`, credentials.createInsecure()) }) as FakeMember;
}

describe('simple tokens of a raft log etcd no longer has (unit)', () => {
  const members: FakeMember[] = [];
  const log = pino({ level: 'silent' });
  const pool = {
    members: (): UpstreamMember[] => members.map((m, i) => ({ endpoint: { url: `http://member-${i}` }, client: m.client }) as unknown as UpstreamMember),
  } as unknown as UpstreamPool;
  const indexes = (...values: (number | null)[]): void => values.forEach((value, i) => ((members[i] as FakeMember).raftIndex = value));

  before(async () => {
    for (let i = 0; i < 3; i += 1) members.push(await startMember());
  });
  after(() => {
    for (const member of members) {
      member.client.close();
      member.server.forceShutdown();
    }
  });

  it('takes a token past a majority of logs, never a JWT or a token within a log', async () => {
    const check = new TokenLogCheck(pool, log);
    indexes(40, 41, 42);
    assert.equal(await check.isPastEveryLog('abcdefghijklmnop.500'), true);
    assert.equal(await check.isPastEveryLog('abcdefghijklmnop.42'), false);
    assert.equal(await check.isPastEveryLog('eyJhbGciOiJSUzI1NiJ9.eyJ1c2VybmFtZSI6ImEifQ.c2ln'), false);
    // A token issued by a member ahead of the others (the leader committed it first) is within the log.
    indexes(40, 41, 600);
    assert.equal(await check.isPastEveryLog('abcdefghijklmnop.500', true), false);
  });

  it('decides nothing when fewer than a majority answer', async () => {
    const check = new TokenLogCheck(pool, log);
    indexes(40, null, null);
    assert.equal(await check.isPastEveryLog('abcdefghijklmnop.500'), false);
    indexes(40, 41, null);
    assert.equal(await check.isPastEveryLog('abcdefghijklmnop.500'), true);
  });

  it('looks twice, so that a log that reaches the token meanwhile keeps it', async () => {
    const check = new TokenLogCheck(pool, log);
    indexes(40, 41, 42);
    const pending = check.isPastEveryLog('abcdefghijklmnop.500');
    // The first look is under way: the members' commit index reaches the token before the second.
    await new Promise((resolve) => setTimeout(resolve, 100));
    indexes(500, 500, 500);
    assert.equal(await pending, false);
  });

  it('asks each member once per look, however many tokens wait', async () => {
    const check = new TokenLogCheck(pool, log);
    indexes(40, 41, 42);
    const before = members.map((m) => m.asked);
    const verdicts = await Promise.all(Array.from({ length: 200 }, (_, i) => check.isPastEveryLog(`abcdefghijklmnop.${1_000 + i}`)));
    assert.ok(verdicts.every((verdict) => verdict));
    const asked = members.map((m, i) => m.asked - (before[i] ?? 0));
    // A look for the first token and one queued behind it for the rest; their second looks likewise, a few
    // ms apart (at most one running and one waiting at any time): a handful, not one per token.
    assert.ok(asked.every((count) => count <= 6), `each member was asked ${asked.join(', ')} times`);
    // A token within what the last look saw needs no look at all.
    const after = members.map((m) => m.asked);
    assert.equal(await check.isPastEveryLog('abcdefghijklmnop.30'), false);
    assert.deepEqual(
      members.map((m) => m.asked),
      after,
    );
  });
});
