// Unit: src/gateway/wire-json.ts writes, straight from protobuf bytes, the
// same JSON as the object-based writer it replaced (test/support/
// decoded-json.ts: protobufjs decode, then Go's jsonpb rules), for
// thousands of randomised answers of every type the gateway serves and for
// a test message with every scalar type. Hand-made bytes then cover what
// protobufjs's encoder never produces (fields out of order, repeats, split
// messages, unknown fields, packed runs, malformed input), where the
// expected text is Go's: etcd's gateway decodes with gogo/protobuf's
// generated code before jsonpb writes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Enum, parse, Type, type Field } from 'protobufjs';
import { lookupMessage } from '../../src/gateway/proto-json';
import { wireToJson, wireToJsonBuffer } from '../../src/gateway/wire-json';
import { decodedJson } from '../support/decoded-json';

/** Every answer type the gateway routes (src/gateway/routes.ts), and a few etcd answers it does not route. */
const RESPONSE_TYPES = [
  'RangeResponse', 'PutResponse', 'DeleteRangeResponse', 'TxnResponse', 'CompactionResponse', 'WatchResponse',
  'LeaseGrantResponse', 'LeaseRevokeResponse', 'LeaseKeepAliveResponse', 'LeaseTimeToLiveResponse', 'LeaseLeasesResponse',
  'MemberAddResponse', 'MemberRemoveResponse', 'MemberUpdateResponse', 'MemberListResponse', 'MemberPromoteResponse',
  'AlarmResponse', 'StatusResponse', 'DefragmentResponse', 'HashResponse', 'HashKVResponse', 'SnapshotResponse', 'MoveLeaderResponse',
  'AuthEnableResponse', 'AuthDisableResponse', 'AuthStatusResponse', 'AuthenticateResponse', 'AuthUserAddResponse', 'AuthUserGetResponse',
  'AuthUserListResponse', 'AuthUserDeleteResponse', 'AuthUserChangePasswordResponse', 'AuthUserGrantRoleResponse',
  'AuthUserRevokeRoleResponse', 'AuthRoleAddResponse', 'AuthRoleGetResponse', 'AuthRoleListResponse', 'AuthRoleDeleteResponse',
  'AuthRoleGrantPermissionResponse', 'AuthRoleRevokePermissionResponse', 'DowngradeResponse',
].map((name) => lookupMessage(`etcdserverpb.${name}`));

const CASES_PER_TYPE = 120;

/** Every scalar type, packed and unpacked repeated numbers, a oneof of scalars and a message, a field number past 255. */
const TEST_PROTO = `
syntax = "proto3";
package wiretest;
enum Color { RED = 0; GREEN = 1; BLUE = 2; }
message Inner { int32 a = 1; string s = 2; repeated int64 n = 3; }
message All {
  int32 i32 = 1; uint32 u32 = 2; sint32 s32 = 3; int64 i64 = 4; uint64 u64 = 5; sint64 s64 = 6;
  fixed32 f32 = 7; sfixed32 sf32 = 8; fixed64 f64 = 9; sfixed64 sf64 = 10; float fl = 11; double db = 12;
  bool b = 13; string str = 14; bytes by = 15; Color color = 16; Inner inner = 17;
  repeated int32 r_i32 = 18; repeated uint32 r_u32 = 19; repeated sint32 r_s32 = 20; repeated int64 r_i64 = 21;
  repeated uint64 r_u64 = 22; repeated sint64 r_s64 = 23; repeated fixed32 r_f32 = 24; repeated sfixed32 r_sf32 = 25;
  repeated fixed64 r_f64 = 26; repeated sfixed64 r_sf64 = 27; repeated float r_fl = 28; repeated double r_db = 29;
  repeated bool r_b = 30; repeated string r_str = 31; repeated bytes r_by = 32; repeated Color r_color = 33;
  repeated Inner r_inner = 34;
  repeated int64 unpacked_i64 = 35 [packed = false];
  repeated sint32 unpacked_s32 = 36 [packed = false];
  repeated Color unpacked_color = 37 [packed = false];
  oneof choice { int64 o_i64 = 40; string o_str = 41; Inner o_inner = 42; bool o_b = 43; bytes o_by = 44; Color o_color = 45; }
  int64 far = 300;
}
`;
const testRoot = parse(TEST_PROTO, { keepCase: true }).root;
testRoot.resolveAll();
const ALL = testRoot.lookupType('wiretest.All');

// ---- random messages -------------------------------------------------------

/** mulberry32: a small seeded generator, so that a failure names a case that can be run again. */
function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

type Plain = string | number | boolean | Buffer | PlainObject | Plain[];
interface PlainObject {
  [field: string]: Plain;
}

const SIGNED_64 = ['0', '1', '-1', '127', '128', '9007199254740991', '9007199254740993', '-9007199254740993', '9223372036854775807', '-9223372036854775808'];
const UNSIGNED_64 = ['0', '1', '9007199254740993', '9223372036854775807', '9223372036854775808', '18446744073709551615'];
const SIGNED_32 = [0, 1, -1, 300, 2_147_483_647, -2_147_483_648];
const UNSIGNED_32 = [0, 1, 300, 4_294_967_295];
const FLOATS = [0, -0, 1, -1.5, 0.1, 1e-7, 1e21, 3.4e38, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
const STRING_PIECES = ['', 'a', '<>&', '"\\', '\u0000\u0001\u001f\u007f', '\b\f\n\r\t', '\u2028\u2029', 'é', '漢字', '😀', '\ufffd', 'apisix/routes/1'];

class Generator {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = randomSource(seed);
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  integer(below: number): number {
    return Math.floor(this.next() * below);
  }

  message(type: Type, depth: number): PlainObject {
    const plain: PlainObject = {};
    // At most one member per oneof: protobufjs would encode them all, which no Go sender does.
    const chosen = new Map(type.oneofsArray.map((oneof) => [oneof, this.chance(0.7) ? this.pick(oneof.fieldsArray) : null]));
    for (const field of type.fieldsArray) {
      if (field.partOf !== null ? chosen.get(field.partOf) !== field : !this.chance(0.6)) continue;
      const resolved = field.resolvedType;
      // Messages within messages (a Txn in a Txn): bounded, and sparser the deeper.
      if (resolved instanceof Type && depth >= 4) continue;
      if (field.repeated) {
        const count = this.integer(depth === 0 ? 5 : 3);
        plain[field.name] = Array.from({ length: count }, () => this.value(field, depth));
      } else {
        plain[field.name] = this.value(field, depth);
      }
    }
    return plain;
  }

  private value(field: Field, depth: number): Plain {
    const resolved = field.resolvedType;
    if (resolved instanceof Type) return this.message(resolved, depth + 1);
    if (resolved instanceof Enum) return this.chance(0.8) ? this.pick(Object.values(resolved.values)) : this.pick([7, 99, -1]);
    switch (field.type) {
      case 'int64':
      case 'sint64':
      case 'sfixed64':
        return this.chance(0.7) ? this.pick(SIGNED_64) : String(BigInt(this.integer(2 ** 31)) * BigInt(this.integer(2 ** 31)) * (this.chance(0.5) ? 1n : -1n));
      case 'uint64':
      case 'fixed64':
        return this.chance(0.7) ? this.pick(UNSIGNED_64) : String(BigInt(this.integer(2 ** 31)) * BigInt(this.integer(2 ** 31)) * 4n);
      case 'int32':
      case 'sint32':
      case 'sfixed32':
        return this.chance(0.7) ? this.pick(SIGNED_32) : this.integer(2 ** 32) - 2 ** 31;
      case 'uint32':
      case 'fixed32':
        return this.chance(0.7) ? this.pick(UNSIGNED_32) : this.integer(2 ** 32);
      case 'float':
        return this.chance(0.7) ? this.pick(FLOATS) : Math.fround((this.next() - 0.5) * 1e6);
      case 'double':
        return this.chance(0.7) ? this.pick(FLOATS) : (this.next() - 0.5) * 10 ** this.integer(30);
      case 'bool':
        return this.chance(0.5);
      case 'string':
        return Array.from({ length: this.integer(4) }, () => this.pick(STRING_PIECES)).join('');
      case 'bytes': {
        const length = this.chance(0.2) ? 0 : this.chance(0.1) ? 300 + this.integer(700) : this.integer(20);
        return Buffer.from(Array.from({ length }, () => this.integer(256)));
      }
      default:
        throw new Error(`no generator for ${field.type}`);
    }
  }
}

function encode(type: Type, plain: PlainObject): Buffer {
  return Buffer.from(type.encode(type.fromObject(plain)).finish());
}

function assertSameAsObjectWriter(type: Type, bytes: Buffer, context: string): void {
  const expected = decodedJson(type, bytes);
  const actual = wireToJson(type, bytes);
  assert.equal(actual, expected, `${type.name} ${context}: ${bytes.toString('hex')}`);
  assert.ok(wireToJsonBuffer(type, bytes).equals(Buffer.from(expected, 'utf8')), `${type.name} ${context}: bytes differ from the text`);
}

describe('wireToJson writes what the object-based writer wrote', () => {
  it(`for ${CASES_PER_TYPE} random answers of each of ${RESPONSE_TYPES.length} etcd answer types`, () => {
    RESPONSE_TYPES.forEach((type, index) => {
      const seed = 1000 + index;
      const generator = new Generator(seed);
      for (let i = 0; i < CASES_PER_TYPE; i++) assertSameAsObjectWriter(type, encode(type, generator.message(type, 0)), `seed ${seed} case ${i}`);
    });
  });

  it('for 1500 random messages with every scalar type, packed and unpacked', () => {
    const generator = new Generator(7);
    for (let i = 0; i < 1500; i++) assertSameAsObjectWriter(ALL, encode(ALL, generator.message(ALL, 0)), `seed 7 case ${i}`);
  });

  it('for an empty answer and an all-defaults one', () => {
    for (const type of RESPONSE_TYPES) assertSameAsObjectWriter(type, Buffer.alloc(0), 'empty');
    assert.equal(wireToJson(lookupMessage('etcdserverpb.RangeResponse'), Buffer.alloc(0)), '{}');
    assert.equal(wireToJson(lookupMessage('etcdserverpb.PutResponse'), encode(lookupMessage('etcdserverpb.PutResponse'), { header: {} })), '{"header":{}}');
  });

  it('for a Txn nested 300 deep', () => {
    const txn = lookupMessage('etcdserverpb.TxnResponse');
    let plain: PlainObject = { header: { revision: '5' }, succeeded: true };
    for (let i = 0; i < 300; i++) plain = { responses: [{ response_txn: plain }, { response_put: { header: { revision: String(i) } } }] };
    assertSameAsObjectWriter(txn, encode(txn, plain), 'nested');
  });
});

// ---- hand-made wire bytes ---------------------------------------------------

function varint(value: bigint | number): Buffer {
  let rest = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest === 0n ? low : low | 0x80);
  } while (rest !== 0n);
  return Buffer.from(bytes);
}
const tag = (number: number, wireType: number): Buffer => varint((number << 3) | wireType);
/** A varint field. */
const v = (number: number, value: bigint | number): Buffer => Buffer.concat([tag(number, 0), varint(value)]);
/** A length-delimited field. */
const ld = (number: number, ...payload: Buffer[]): Buffer => {
  const body = Buffer.concat(payload);
  return Buffer.concat([tag(number, 2), varint(body.length), body]);
};
const fixed64 = (number: number, value: bigint): Buffer => {
  const body = Buffer.alloc(8);
  body.writeBigUInt64LE(BigInt.asUintN(64, value));
  return Buffer.concat([tag(number, 1), body]);
};
const fixed32 = (number: number, value: number): Buffer => {
  const body = Buffer.alloc(4);
  body.writeUInt32LE(value >>> 0);
  return Buffer.concat([tag(number, 5), body]);
};
const text = (value: string): Buffer => Buffer.from(value, 'utf8');
const hex = (value: string): Buffer => Buffer.from(value, 'hex');

const rangeResponse = lookupMessage('etcdserverpb.RangeResponse');
const keyValue = lookupMessage('mvccpb.KeyValue');
const responseOp = lookupMessage('etcdserverpb.ResponseOp');

describe('wireToJson reads bytes as etcd (gogo/protobuf) does', () => {
  it('writes fields in declaration order, whatever their order on the wire', () => {
    const bytes = Buffer.concat([ld(5, text('v')), v(6, 7), v(4, 2), ld(1, text('k')), v(3, 9), v(2, 8)]);
    const expected = '{"key":"aw==","create_revision":"8","mod_revision":"9","version":"2","value":"dg==","lease":"7"}';
    assert.equal(wireToJson(keyValue, bytes), expected);
    assert.equal(decodedJson(keyValue, bytes), expected);
  });

  it('takes the last of a repeated single scalar; a last zero leaves the field out', () => {
    assert.equal(wireToJson(keyValue, Buffer.concat([v(3, 5), v(3, 6), ld(1, text('a')), ld(1, text('b'))])), '{"key":"Yg==","mod_revision":"6"}');
    assert.equal(wireToJson(keyValue, Buffer.concat([v(3, 5), v(3, 0), ld(1, text('a')), ld(1)])), '{}');
    for (const bytes of [Buffer.concat([v(3, 5), v(3, 6)]), Buffer.concat([v(3, 5), v(3, 0)])]) assertSameAsObjectWriter(keyValue, bytes, 'repeated scalar');
  });

  it('merges an embedded message that comes in two parts', () => {
    const bytes = Buffer.concat([ld(1, v(1, 1), v(3, 5)), v(4, 3), ld(1, v(2, 2), v(3, 7))]);
    // protobufjs keeps only the second part: {"header":{"member_id":"2","revision":"7"},"count":"3"}.
    assert.equal(wireToJson(rangeResponse, bytes), '{"header":{"cluster_id":"1","member_id":"2","revision":"7"},"count":"3"}');
    // Repeated fields inside the parts add up.
    const leases = lookupMessage('etcdserverpb.LeaseTimeToLiveResponse');
    assert.equal(wireToJson(leases, Buffer.concat([ld(5, text('a')), ld(5, text('b'))])), '{"keys":["YQ==","Yg=="]}');
  });

  it('keeps only the oneof member seen last, and a message member is replaced, not merged', () => {
    // protobufjs sets both members: {"response_range":{...},"response_put":{}}.
    assert.equal(wireToJson(responseOp, Buffer.concat([ld(1, v(4, 3)), ld(2)])), '{"response_put":{}}');
    assert.equal(wireToJson(responseOp, Buffer.concat([ld(2), ld(1, v(4, 3))])), '{"response_range":{"count":"3"}}');
    // gogo's Unmarshal makes a fresh value for each occurrence of a oneof message member.
    assert.equal(wireToJson(responseOp, Buffer.concat([ld(1, v(4, 3)), ld(1, v(3, 1))])), '{"response_range":{"more":true}}');
    // A oneof scalar member counts once set, even at zero.
    assert.equal(wireToJson(ALL, Buffer.concat([ld(41, text('x')), v(40, 0)])), '{"o_i64":"0"}');
    assert.equal(wireToJson(ALL, Buffer.concat([v(40, 5), ld(44)])), '{"o_by":""}');
  });

  it('skips unknown fields of every wire type, groups included', () => {
    const unknown = Buffer.concat([
      v(20, 1n << 63n),
      fixed64(21, 5n),
      ld(22, text('skip me')),
      fixed32(23, 9),
      tag(24, 3), v(1, 1), ld(2, text('in a group')), tag(25, 3), fixed32(1, 1), tag(25, 4), tag(24, 4),
      v(300, 1),
    ]);
    const bytes = Buffer.concat([unknown, ld(2, unknown, ld(1, text('k')), unknown, v(4, 1)), unknown, v(4, 1), unknown]);
    assert.equal(wireToJson(rangeResponse, bytes), '{"kvs":[{"key":"aw==","version":"1"}],"count":"1"}');
    assertSameAsObjectWriter(rangeResponse, bytes, 'unknown fields');
  });

  it('gathers packed and unpacked runs of one repeated field, in wire order', () => {
    const packed = (number: number, ...values: Buffer[]): Buffer => ld(number, ...values);
    const bytes = Buffer.concat([
      v(21, 1), packed(21, varint(2), varint(-3), varint(1n << 62n)), v(21, -1),
      packed(20, varint(1), varint(4), varint(3)), v(20, 2),
      packed(33, varint(2), varint(1), varint(5)), v(33, 0),
      v(35, 9), packed(35, varint(10)),
      packed(26, hex('ffffffffffffffff'), hex('0100000000000000')), fixed64(26, 3n),
      packed(18),
    ]);
    const expected = '{"r_s32":[-1,2,-2,1],"r_i64":["1","2","-3","4611686018427387904","-1"],"r_f64":["18446744073709551615","1","3"],"r_color":["BLUE","GREEN",5,"RED"],"unpacked_i64":["9","10"]}';
    assert.equal(wireToJson(ALL, bytes), expected);
    assertSameAsObjectWriter(ALL, bytes, 'packed');
    // etcd's own repeated enum (a request, but the same reading).
    const create = lookupMessage('etcdserverpb.WatchCreateRequest');
    assert.equal(wireToJson(create, Buffer.concat([packed(5, varint(1), varint(0)), v(5, 1)])), '{"filters":["NODELETE","NOPUT","NODELETE"]}');
  });

  it('reads 64-bit edges exactly and 32-bit fields from ten-byte varints', () => {
    const bytes = Buffer.concat([
      v(1, -2), v(4, -1), v(5, (1n << 64n) - 1n), v(6, (1n << 64n) - 1n), fixed64(10, 1n << 63n), v(2, -1),
    ]);
    const expected = '{"i32":-2,"u32":4294967295,"i64":"-1","u64":"18446744073709551615","s64":"-9223372036854775808","sf64":"-9223372036854775808"}';
    assert.equal(wireToJson(ALL, bytes), expected);
    assertSameAsObjectWriter(ALL, bytes, '64-bit edges');
    assert.equal(wireToJson(ALL, Buffer.concat([v(6, (1n << 64n) - 2n), v(300, (1n << 53n) + 1n)])), '{"s64":"9223372036854775807","far":"9007199254740993"}');
  });

  it('takes a bool from the whole varint, as Go does', () => {
    // protobufjs reads only the low 32 bits and would leave this bool out.
    assert.equal(wireToJson(ALL, v(13, 1n << 32n)), '{"b":true}');
  });

  it("writes strings that are not UTF-8 as etcd 3.4's gateway does (one \\ufffd per bad byte)", () => {
    const users = lookupMessage('etcdserverpb.AuthUserListResponse');
    // Names added over gRPC to a real etcd 3.4.23, then listed through its own gateway.
    const names = ['61ff62', '61e28262', '61eda08062', '61f0908062', '61c0af62', '6108 0c7f e280a8 3c3e26 efbfbd 7a'.replace(/ /g, '')];
    const bytes = Buffer.concat(names.map((name) => ld(2, hex(name))));
    assert.equal(
      wireToJson(users, bytes),
      '{"users":["a\\ufffdb","a\\ufffd\\ufffdb","a\\ufffd\\ufffd\\ufffdb","a\\ufffd\\ufffd\\ufffdb","a\\ufffd\\ufffdb","a\\u0008\\u000c\u007f\\u2028\\u003c\\u003e\\u0026\ufffdz"]}',
    );
  });
});

describe('wireToJson refuses malformed bytes', () => {
  const malformed: ReadonlyArray<readonly [string, Type, Buffer]> = [
    ['a tag and nothing', rangeResponse, hex('20')],
    ['a truncated varint', rangeResponse, hex('2080')],
    ['a truncated tag', rangeResponse, hex('a0')],
    ['a length past the end', rangeResponse, hex('120501')],
    ['a length past the end of the enclosing message', rangeResponse, hex('12030a056120012001')],
    ['a varint truncated at its message end', rangeResponse, hex('12021080')],
    ['a varint of eleven bytes', rangeResponse, Buffer.concat([hex('20'), Buffer.alloc(10, 0xff), hex('01')])],
    ['a truncated fixed64', rangeResponse, hex('a901010203')],
    ['a truncated fixed32', rangeResponse, hex('ad010102')],
    ['wire type 6', rangeResponse, hex('ae0100')],
    ['wire type 7', rangeResponse, hex('af0100')],
    ['an end group with no start', rangeResponse, hex('ac01')],
    ['a group never ended', rangeResponse, hex('ab010801')],
    ['field number 0', rangeResponse, hex('0001')],
    ['a message field sent as a varint', rangeResponse, hex('0801')],
    ['a varint field sent length-delimited', rangeResponse, hex('220101')],
    ['a bytes field sent as fixed32', keyValue, hex('0d01020304')],
  ];
  for (const [name, type, bytes] of malformed) {
    it(`throws on ${name}`, () => {
      assert.throws(() => wireToJson(type, bytes), (error: unknown) => error instanceof Error && error.message.startsWith('wire-json: '));
    });
  }

  it('throws on every strict prefix of a message made of one length-delimited field', () => {
    const kv = encode(keyValue, { key: Buffer.from('/apisix/routes/1'), create_revision: '5', mod_revision: '9007199254740993', version: '2', value: Buffer.alloc(200, 7), lease: '-1' });
    const bytes = Buffer.concat([ld(2, kv)]);
    for (let length = 1; length < bytes.length; length++) assert.throws(() => wireToJson(rangeResponse, bytes.subarray(0, length)), `prefix of ${length}`);
  });
});
