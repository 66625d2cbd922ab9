// Unit (no network): a tier registration as etcd grpc-proxy writes and reads
// it, what is skipped when it does not parse, and the flags' checks between
// them (--resolver-prefix needs --resolver-ttl, and the other way round).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import { configProblems } from '../support/config-problems';
import { MAX_TIER_ENTRY_BYTES, readTierEntry, registrationKey, registrationRange, registrationValue, tierMemberId } from '../../src/upstream/tier-entry';

const b = (s: string): Buffer => Buffer.from(s);
const read = (value: string, key = '/tier/x'): ReturnType<typeof readTierEntry> => readTierEntry(b(key), b(value));

describe('tier entries', () => {
  it("writes grpc-proxy's key and value, and reads them back", () => {
    assert.equal(registrationKey('/tier', 'http://10.0.0.1:23790'), '/tier/http://10.0.0.1:23790');
    // What grpc-proxy's endpoints manager stores (Go's json.Marshal of its Update, metadata a JSON string).
    const value = registrationValue('http://10.0.0.1:23790', 'regional-1');
    assert.equal(value, '{"Op":0,"Addr":"http://10.0.0.1:23790","Metadata":"{\\"name\\":\\"regional-1\\"}"}');
    assert.deepEqual(read(value), { addr: 'http://10.0.0.1:23790', name: 'regional-1' });
    // grpc-proxy's default advertise address has no scheme.
    assert.deepEqual(read('{"Op":0,"Addr":"127.0.0.1:23790","Metadata":"{\\"name\\":\\"h\\"}"}'), { addr: '127.0.0.1:23790', name: 'h' });
    assert.deepEqual(read('{"Op":0,"Addr":"[::1]:23790"}'), { addr: '[::1]:23790', name: '[::1]:23790' });
  });

  it('the range holds every key under prefix/ and nothing else', () => {
    const { start, end } = registrationRange('/tier');
    const inside = (key: string): boolean => Buffer.compare(b(key), start) >= 0 && Buffer.compare(b(key), end) < 0;
    assert.ok(inside('/tier/http://a:1'));
    assert.ok(inside('/tier/\xff'));
    assert.ok(!inside('/tier'));
    assert.ok(!inside('/tier0'));
    assert.ok(!inside('/tierx/a'));
  });

  it('skips what does not parse or is too big, and names an entry by its address when its metadata says nothing usable', () => {
    for (const value of ['', 'not json', '[1]', 'null', '"s"', '{}', '{"Op":1,"Addr":"http://a:1"}', '{"Addr":5}', '{"Addr":""}', '{"Addr":"javascript:alert(1)"}', '{"Addr":"http://a:1\\n"}', `{"Addr":"http://${'a'.repeat(600)}:1"}`]) {
      assert.equal(read(value), null, value);
    }
    assert.equal(read(JSON.stringify({ Addr: 'http://a:1', Metadata: 'x'.repeat(MAX_TIER_ENTRY_BYTES) })), null);
    assert.equal(readTierEntry(b('k'.repeat(MAX_TIER_ENTRY_BYTES + 1)), b('{"Addr":"http://a:1"}')), null);
    assert.deepEqual(read('{"Addr":"http://a:1","Metadata":"not json"}'), { addr: 'http://a:1', name: 'http://a:1' });
    assert.deepEqual(read('{"Addr":"http://a:1","Metadata":{"name":"obj"}}'), { addr: 'http://a:1', name: 'obj' });
    assert.deepEqual(read('{"Addr":"http://a:1","Metadata":"{\\"name\\":\\"a\\\\u0007b\\"}"}'), { addr: 'http://a:1', name: 'http://a:1' });
  });

  it('gives each address its own ID, the same on every proxy, never 0', () => {
    assert.equal(tierMemberId('http://a:1'), tierMemberId('http://a:1'));
    assert.notEqual(tierMemberId('http://a:1'), tierMemberId('http://a:2'));
    assert.notEqual(tierMemberId('http://a:1'), '0');
  });
});

describe('--resolver-prefix and --resolver-ttl', () => {
  const problems = configProblems;

  it('off by default; both given: on', () => {
    assert.equal(loadConfig({ argv: [], env: {} }).resolver, null);
    assert.deepEqual(loadConfig({ argv: ['--resolver-prefix', '/tier', '--resolver-ttl', '30'], env: {} }).resolver, { prefix: '/tier', ttlSeconds: 30 });
  });

  it("refuses one without the other, and a TTL under a second, as grpc-proxy's checks do", () => {
    assert.match(problems(['--resolver-prefix', '/tier']).join('\n'), /--resolver-prefix needs --resolver-ttl/);
    assert.match(problems(['--resolver-ttl', '5']).join('\n'), /--resolver-ttl has no effect without --resolver-prefix/);
    assert.match(problems(['--resolver-prefix', '/tier', '--resolver-ttl', '0']).join('\n'), /at least 1/);
    assert.match(problems(['--resolver-prefix', '', '--resolver-ttl', '5']).join('\n'), /must not be empty/);
  });
});
