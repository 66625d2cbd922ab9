// Unit test (no network): which members a proxy follows after a member list,
// by what answered it: etcd's list as it is; a proxy's list added to the
// endpoints given, never replacing them, loopback URLs only from a local proxy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseEndpoint } from '../../src/etcd/endpoint';
import { membersToFollow, type ListedMembers } from '../../src/upstream/member-list';

const urls = (endpoints: readonly { url: string }[]): string[] => endpoints.map((e) => e.url);
const given = [parseEndpoint('http://10.0.0.1:23790'), parseEndpoint('http://10.0.0.2:23790')];

const listed = (answeredBy: ListedMembers['answeredBy'], from: string, members: string[]): ListedMembers => ({
  answeredBy,
  answeredFrom: parseEndpoint(from),
  endpoints: members.map(parseEndpoint),
});

test("etcd's member list is followed as it is: a given endpoint it does not list is dropped", () => {
  const next = membersToFollow(given, listed('etcd', 'http://10.0.0.1:23790', ['http://10.0.0.1:23790', 'http://10.0.0.3:2379']));
  assert.deepEqual(urls(next.endpoints), ['http://10.0.0.1:23790', 'http://10.0.0.3:2379']);
  assert.deepEqual(next.loopbackLeftOut, []);
});

test("a proxy's list never takes a given endpoint away, and what it lists is added", () => {
  const onlyItself = membersToFollow(given, listed('proxy', 'http://10.0.0.1:23790', ['http://10.0.0.1:23790']));
  assert.deepEqual(urls(onlyItself.endpoints), ['http://10.0.0.1:23790', 'http://10.0.0.2:23790', 'http://10.0.0.1:23790'], 'duplicates are one member in the pool');
  const itsTier = membersToFollow(given, listed('proxy', 'http://10.0.0.1:23790', ['http://regional-3.internal:23790']));
  assert.deepEqual(urls(itsTier.endpoints), ['http://10.0.0.1:23790', 'http://10.0.0.2:23790', 'http://regional-3.internal:23790']);
});

test('loopback URLs a remote proxy lists name its machine, not this one: left out and reported', () => {
  const next = membersToFollow(given, listed('proxy', 'http://10.0.0.1:23790', ['http://127.0.0.1:23790', 'http://localhost:23790', 'http://[::1]:23790', 'http://10.0.0.9:23790']));
  assert.deepEqual(urls(next.endpoints), ['http://10.0.0.1:23790', 'http://10.0.0.2:23790', 'http://10.0.0.9:23790']);
  assert.deepEqual(next.loopbackLeftOut, ['http://127.0.0.1:23790', 'http://localhost:23790', 'http://[::1]:23790']);
});

test('from a proxy dialled on loopback (same machine), its loopback URLs are taken', () => {
  const local = [parseEndpoint('http://127.0.0.1:23791')];
  const next = membersToFollow(local, listed('proxy', 'http://127.0.0.1:23791', ['http://127.0.0.1:23792']));
  assert.deepEqual(urls(next.endpoints), ['http://127.0.0.1:23791', 'http://127.0.0.1:23792']);
  assert.deepEqual(next.loopbackLeftOut, []);
});
