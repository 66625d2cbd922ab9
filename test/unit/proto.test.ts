// Unit: the .proto files in proto/ describe etcd's wire format exactly.
// Compared field by field with the copies the etcd3 package ships and, where
// Debian's golang-etcd-server-dev is installed (CI installs it), with etcd's
// own originals.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader';
import { Enum, type Field, type Type } from 'protobufjs';
import { ETCD_SERVICES, etcdProtoRoot, protoRoot, serviceMethods } from '../../src/etcd/proto';

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

/** proto/ as @grpc/proto-loader reads it, with the options the proxy used it with before building its own codecs. */
function loadOurs(options: object = {}): PackageDefinition {
  return loadSync(join(protoRoot(), 'etcdserverpb', 'rpc.proto'), { keepCase: true, includeDirs: [protoRoot()], ...options });
}

/** What proto-loader decoded to: int64 as decimal strings, enums by name, bytes as Buffers, absent fields absent. */
const PROTO_LOADER_OPTIONS = { longs: String, enums: String, bytes: Buffer, defaults: false, oneofs: true };

/**
 * A message of `type` with every field set (one member of each oneof,
 * repeated fields twice, nesting to `depth`), varied by `seed`: in the
 * form a caller hands a serializer (int64 as strings, enums by name).
 */
function filled(type: Type, seed: number, depth: number): Record<string, unknown> {
  const value: Record<string, unknown> = {};
  const oneofTaken = new Set<string>();
  for (const [i, field] of type.fieldsArray.entries()) {
    const oneof = field.partOf?.name;
    if (oneof !== undefined) {
      if (oneofTaken.has(oneof) || (seed + i) % 2 === 1) continue;
      oneofTaken.add(oneof);
    }
    const one = (k: number): unknown => scalar(field, seed + i * 7 + k, depth);
    const item = field.repeated ? [one(0), one(1)].filter((v) => v !== undefined) : one(0);
    if (item !== undefined && !(Array.isArray(item) && item.length === 0)) value[field.name] = item;
  }
  return value;
}

function scalar(field: Field, n: number, depth: number): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof Enum) {
    const names = Object.keys(resolved.values);
    return names[n % names.length];
  }
  if (resolved !== null) return depth > 0 ? filled(resolved, n, depth - 1) : undefined;
  switch (field.type) {
    case 'bytes':
      return Buffer.from(`bytes-${n}-\u00ff`, 'latin1');
    case 'string':
      return `text ${n} é`;
    case 'bool':
      return n % 2 === 0;
    case 'int64':
      return n % 3 === 0 ? '-9223372036854775808' : `${n}123456789012`;
    case 'uint64':
    case 'fixed64':
      return n % 3 === 0 ? '18446744073709551615' : `${n}987654321`;
    case 'int32':
      return n % 2 === 0 ? -n - 1 : n + 1;
    default:
      return n + 1;
  }
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
    const proto = loadOurs();
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

  it("codes every method's messages as @grpc/proto-loader did, byte for byte and field for field", () => {
    const loader = loadOurs(PROTO_LOADER_OPTIONS);
    let checked = 0;
    for (const service of ETCD_SERVICES) {
      const theirs = loader[service] as Record<string, MethodDefinition<object, object>>;
      const ours = serviceMethods(service);
      assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort(), service);
      for (const [name, method] of Object.entries(ours)) {
        const reference = theirs[name];
        assert.ok(reference !== undefined);
        assert.deepEqual([method.path, method.requestStream, method.responseStream], [reference.path, reference.requestStream, reference.responseStream], name);
        const rpc = etcdProtoRoot().lookupService(service).methods[name];
        assert.ok(rpc?.resolvedRequestType && rpc.resolvedResponseType, name);
        for (const seed of [0, 1, 2]) {
          const sides: readonly (readonly [Type, MethodDefinition<object, object>['requestSerialize'], MethodDefinition<object, object>['requestDeserialize'], typeof reference.requestSerialize, typeof reference.requestDeserialize])[] = [
            [rpc.resolvedRequestType, method.requestSerialize, method.requestDeserialize, reference.requestSerialize, reference.requestDeserialize],
            [rpc.resolvedResponseType, method.responseSerialize, method.responseDeserialize, reference.responseSerialize, reference.responseDeserialize],
          ];
          for (const [type, serialize, deserialize, serializeRef, deserializeRef] of sides) {
            const value = filled(type, seed, 3);
            const bytes = serialize(value);
            assert.ok(Buffer.isBuffer(bytes), `${name}: a Buffer`);
            assert.deepEqual(bytes, serializeRef(value), `${service}.${name} ${type.name} bytes`);
            assert.deepEqual(deserialize(bytes), deserializeRef(bytes), `${service}.${name} ${type.name} decoded`);
            assert.deepEqual(deserialize(Buffer.alloc(0)), deserializeRef(Buffer.alloc(0)), `${name}: empty`);
            checked += 1;
          }
        }
      }
    }
    assert.ok(checked > 200, `checked only ${checked} messages`);
  });

  it('matches the etcd3 package copies field by field (enum case aside)', () => {
    const reference = loadSync(join(ETCD3_PROTO, 'rpc.proto'), { keepCase: true, includeDirs: [ETCD3_PROTO] });
    const compared = assertSuperset(loadOurs(), reference, (name) => name.toUpperCase().replace(/_/g, ''));
    assert.ok(compared > 90, `compared only ${compared} messages`);
  });

  it("matches etcd's original .proto files exactly", (t) => {
    if (!existsSync(join(DEBIAN_ETCD, 'etcdserver/etcdserverpb/rpc.proto'))) {
      t.skip('golang-etcd-server-dev not installed (CI installs it)');
      return;
    }
    const compared = assertSuperset(loadOurs(), loadDebianOriginals(), (name) => name);
    assert.ok(compared > 90, `compared only ${compared} messages`);
  });
});
