// Unit: the .proto files in proto/ describe etcd's wire format exactly.
// Compared field by field with the copies the etcd3 package ships and, where
// Debian's golang-etcd-server-dev is installed (CI installs it), with etcd's
// own originals.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ETCD_SERVICES, loadEtcdProto, serviceMethods } from '../../src/etcd/proto';

interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
interface EnumDescriptor {
  name: string;
  value: { name: string; number: number }[];
}
interface MessageDescriptor {
  field: FieldDescriptor[];
  enumType: EnumDescriptor[];
}

const DEBIAN_ETCD = '/usr/share/gocode/src/go.etcd.io/etcd';
const ETCD3_PROTO = join(dirname(require.resolve('etcd3/package.json')), 'proto');

function messages(definition: PackageDefinition): Map<string, MessageDescriptor> {
  const result = new Map<string, MessageDescriptor>();
  for (const [name, value] of Object.entries(definition)) {
    if ('format' in value && value.format === 'Protocol Buffer 3 DescriptorProto') {
      result.set(name, value.type as MessageDescriptor);
    }
  }
  return result;
}

/** One line per field and enum value: what the wire format depends on. */
function shape(message: MessageDescriptor, enumNames: (name: string) => string): string[] {
  const fields = message.field.map((f) => `${f.number} ${f.name} ${f.label} ${f.type} ${f.typeName.split('.').pop() ?? ''}`);
  const enums = message.enumType.flatMap((e) => e.value.map((v) => `enum ${e.name}.${enumNames(v.name)}=${v.number}`));
  return [...fields, ...enums].sort();
}

function assertSuperset(ours: PackageDefinition, reference: PackageDefinition, enumNames: (name: string) => string): number {
  const mine = messages(ours);
  let compared = 0;
  for (const [name, theirs] of messages(reference)) {
    const own = mine.get(name);
    // Internal raft messages that no client sends are left out of our copy.
    if (own === undefined && /LeaseCheckpoint|^authpb\.(User|Role)$/.test(name)) continue;
    assert.ok(own !== undefined, `${name} missing from proto/`);
    const expected = shape(theirs, enumNames);
    const actual = shape(own, enumNames).filter((line) => expected.includes(line) || !isAdditionAllowed(name, line));
    assert.deepEqual(actual, expected, name);
    compared += 1;
  }
  return compared;
}

/** Fields etcd 3.5 added, which our copy carries and the 3.4 references lack. */
function isAdditionAllowed(message: string, line: string): boolean {
  return message === 'etcdserverpb.MemberListRequest' && line.includes(' linearizable ');
}

/** Debian ships etcd's originals; they load once the gogoproto and google.api imports are dropped. */
function loadDebianOriginals(): PackageDefinition {
  const root = mkdtempSync(join(tmpdir(), 'ecp-proto-'));
  try {
    const copies: Record<string, string> = {
      'etcd/mvcc/mvccpb/kv.proto': 'mvcc/mvccpb/kv.proto',
      'etcd/auth/authpb/auth.proto': 'auth/authpb/auth.proto',
      'etcd/etcdserver/etcdserverpb/rpc.proto': 'etcdserver/etcdserverpb/rpc.proto',
    };
    for (const [target, source] of Object.entries(copies)) {
      const text = readFileSync(join(DEBIAN_ETCD, source), 'utf8')
        .split('\n')
        .filter((line) => !/^import "(gogoproto|google)\//.test(line))
        .join('\n');
      mkdirSync(dirname(join(root, target)), { recursive: true });
      writeFileSync(join(root, target), text);
    }
    return loadSync(join(root, 'etcd/etcdserver/etcdserverpb/rpc.proto'), { keepCase: true, includeDirs: [root] });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

describe('proto/', () => {
  it('loads every etcd service the proxy serves, with etcd method paths', () => {
    for (const service of ETCD_SERVICES) assert.ok(Object.keys(serviceMethods(service)).length > 0, service);
    assert.equal(serviceMethods('etcdserverpb.KV').Range?.path, '/etcdserverpb.KV/Range');
    assert.equal(serviceMethods('etcdserverpb.Watch').Watch?.requestStream, true);
    assert.equal(serviceMethods('etcdserverpb.Watch').Watch?.responseStream, true);
    assert.equal(serviceMethods('etcdserverpb.Lease').LeaseKeepAlive?.responseStream, true);
    assert.equal(serviceMethods('etcdserverpb.Maintenance').Snapshot?.responseStream, true);
  });

  it("uses etcd's enum names, which JSON and clients see", () => {
    const proto = loadEtcdProto();
    const filter = messages(proto).get('etcdserverpb.WatchCreateRequest')?.enumType[0];
    assert.deepEqual(filter?.value.map((v) => [v.name, v.number]), [
      ['NOPUT', 0],
      ['NODELETE', 1],
    ]);
    const range = serviceMethods('etcdserverpb.KV').Range;
    const decoded = range?.requestDeserialize(range.requestSerialize({ sort_order: 'DESCEND', sort_target: 'MOD' }));
    assert.deepEqual({ ...(decoded as object) }, { sort_order: 'DESCEND', sort_target: 'MOD' });
  });

  it('encodes a RangeRequest to the exact bytes etcd expects', () => {
    const range = serviceMethods('etcdserverpb.KV').Range;
    // key=1 (bytes "a"), range_end=2 (bytes "b"), limit=3 (varint 5), count_only=9 (true)
    const bytes = range?.requestSerialize({ key: Buffer.from('a'), range_end: Buffer.from('b'), limit: '5', count_only: true });
    assert.equal(bytes?.toString('hex'), '0a0161120162180548' + '01');
  });

  it('matches the etcd3 package copies field by field (enum case aside)', () => {
    const reference = loadSync(join(ETCD3_PROTO, 'rpc.proto'), { keepCase: true, includeDirs: [ETCD3_PROTO] });
    const compared = assertSuperset(loadEtcdProto(), reference, (name) => name.toUpperCase().replace(/_/g, ''));
    assert.ok(compared > 90, `compared only ${compared} messages`);
  });

  it("matches etcd's original .proto files exactly", (t) => {
    if (!existsSync(join(DEBIAN_ETCD, 'etcdserver/etcdserverpb/rpc.proto'))) {
      t.skip('golang-etcd-server-dev not installed (CI installs it)');
      return;
    }
    const compared = assertSuperset(loadEtcdProto(), loadDebianOriginals(), (name) => name);
    assert.ok(compared > 90, `compared only ${compared} messages`);
  });
});
