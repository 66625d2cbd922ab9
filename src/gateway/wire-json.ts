import { Enum, Type, type Field } from 'protobufjs';
import { goJsonString } from './go-string';
import { JsonBytes } from './json-bytes';
import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LENGTH, WIRE_VARINT, WireError, JsonWireReader } from './json-wire-reader';

/**
 * The JSON etcd's gateway writes for a protobuf answer (golang/protobuf's
 * jsonpb as grpc-gateway v1 sets it up: .proto names, declaration order,
 * zero values left out, 64-bit integers quoted, bytes as padded base64,
 * enums by name), written straight from the wire bytes: no message objects
 * are built, so a Range of thousands of keys costs about one base64 pass
 * over its values.
 *
 * The bytes are read as etcd reads them (gogo/protobuf's generated
 * Unmarshal, which etcd's gateway runs before jsonpb): for a field seen
 * twice the last value counts, an embedded message seen twice is merged,
 * a oneof takes whichever member came last (a message member replaced, not
 * merged), packed and unpacked repeated numbers are both taken, unknown
 * fields are skipped, and a wrong wire type, a truncated value or a length
 * past the end throws.
 */
export function wireToJson(type: Type, bytes: Buffer): string {
  return walk(type, bytes).toString();
}

/** The same JSON as UTF-8 bytes: what an HTTP answer needs, without encoding a string again. */
export function wireToJsonBuffer(type: Type, bytes: Buffer): Buffer {
  return walk(type, bytes).toBuffer();
}

function walk(type: Type, bytes: Buffer): JsonBytes {
  const plan = planFor(type);
  const reader = new JsonWireReader(bytes);
  const found = newFound(plan);
  gather(plan, reader, 0, bytes.length, found, 0);
  // Base64 makes a third more than the bytes it encodes, keys and quotes add a little: usually no regrowth.
  const out = new JsonBytes(bytes.length + (bytes.length >> 1) + 256);
  emit(plan, reader, found, out, 0);
  return out;
}

// ---- plans: what is needed of each message type, worked out once -----------
// They live in this file with the loops that use them: tsx (esbuild) inlines
// enum members only within a file, and reads anything imported through a
// getter, which made a small answer twice as slow when they were apart.

/** A field's protobuf type, as far as reading and writing it differ. */
enum Kind { Int32, Uint32, Sint32, Int64, Uint64, Sint64, Fixed32, Sfixed32, Fixed64, Sfixed64, Float, Double, Bool, Enum, String, Bytes, Message }

/** How a field's occurrences are kept until the message is written. */
enum Mode {
  /** One value: where its last occurrence starts. */
  Scalar,
  /** A repeated scalar: where each element starts. */
  List,
  /** Byte ranges of one embedded message, merged when there are several. */
  Message,
  /** Byte ranges of a repeated message, one element each. */
  Messages,
}

interface FieldPlan {
  /** Position in declaration order: where the field is kept and written. */
  readonly slot: number;
  readonly kind: Kind;
  readonly mode: Mode;
  readonly wireType: number;
  /** A repeated number, bool or enum: may also come packed in one length-delimited run. */
  readonly packable: boolean;
  /** Index of its oneof in the message, or -1. */
  readonly oneof: number;
  /** `"name":` and `,"name":` as bytes, written before the value. */
  readonly key: Uint8Array;
  readonly nextKey: Uint8Array;
  /** Enum numbers to their quoted names, as bytes. */
  readonly enumNames: ReadonlyMap<number, Uint8Array>;
  readonly messageType: Type | null;
  /** The embedded message's plan, made on first use: messages contain themselves (TxnResponse in ResponseOp). */
  subPlan: MessagePlan | null;
}

interface MessagePlan {
  readonly fields: readonly FieldPlan[];
  /** Fields by number: an array for small numbers (all of etcd's), a map for the rest. */
  readonly byNumber: ReadonlyArray<FieldPlan | undefined>;
  readonly byLargeNumber: ReadonlyMap<number, FieldPlan>;
  readonly oneofCount: number;
  readonly hasLists: boolean;
  readonly hasMessages: boolean;
}

const SMALL_FIELD_NUMBERS = 256;
const NO_ENUM_NAMES: ReadonlyMap<number, Uint8Array> = new Map();
const plans = new WeakMap<Type, MessagePlan>();

function planFor(type: Type): MessagePlan {
  let plan = plans.get(type);
  if (plan === undefined) {
    plan = makePlan(type);
    plans.set(type, plan);
  }
  return plan;
}

function makePlan(type: Type): MessagePlan {
  const fields = type.fieldsArray.map((field, slot) => fieldPlan(type, field.resolve(), slot));
  const byNumber = new Array<FieldPlan | undefined>(SMALL_FIELD_NUMBERS).fill(undefined);
  const byLargeNumber = new Map<number, FieldPlan>();
  type.fieldsArray.forEach((field, slot) => {
    if (field.id < SMALL_FIELD_NUMBERS) byNumber[field.id] = fields[slot];
    else if (fields[slot] !== undefined) byLargeNumber.set(field.id, fields[slot]);
  });
  return {
    fields,
    byNumber,
    byLargeNumber,
    oneofCount: type.oneofsArray.length,
    hasLists: fields.some((f) => f.mode === Mode.List),
    hasMessages: fields.some((f) => f.mode === Mode.Message || f.mode === Mode.Messages),
  };
}

const SCALAR_KINDS: Readonly<Record<string, Kind>> = {
  int32: Kind.Int32, uint32: Kind.Uint32, sint32: Kind.Sint32, int64: Kind.Int64, uint64: Kind.Uint64, sint64: Kind.Sint64,
  fixed32: Kind.Fixed32, sfixed32: Kind.Sfixed32, fixed64: Kind.Fixed64, sfixed64: Kind.Sfixed64,
  float: Kind.Float, double: Kind.Double, bool: Kind.Bool, string: Kind.String, bytes: Kind.Bytes,
};

function fieldPlan(type: Type, field: Field, slot: number): FieldPlan {
  // etcd's protos have neither; refusing them beats writing something jsonpb would not.
  if (field.map || field.delimited) throw new Error(`wire-json: ${type.name}.${field.name}: map and group fields are not supported`);
  const resolved = field.resolvedType;
  const kind = resolved instanceof Type ? Kind.Message : resolved instanceof Enum ? Kind.Enum : SCALAR_KINDS[field.type];
  if (kind === undefined) throw new Error(`wire-json: ${type.name}.${field.name}: unknown field type ${field.type}`);
  const isMessage = kind === Kind.Message;
  const wireType = isMessage || kind === Kind.String || kind === Kind.Bytes ? WIRE_LENGTH
    : kind === Kind.Double || kind === Kind.Fixed64 || kind === Kind.Sfixed64 ? WIRE_FIXED64
      : kind === Kind.Float || kind === Kind.Fixed32 || kind === Kind.Sfixed32 ? WIRE_FIXED32
        : WIRE_VARINT;
  const name = goJsonString(field.name);
  return {
    slot,
    kind,
    mode: isMessage ? (field.repeated ? Mode.Messages : Mode.Message) : field.repeated ? Mode.List : Mode.Scalar,
    wireType,
    packable: field.repeated && wireType !== WIRE_LENGTH,
    oneof: field.partOf === null ? -1 : type.oneofsArray.indexOf(field.partOf),
    key: asciiBytes(`${name}:`),
    nextKey: asciiBytes(`,${name}:`),
    enumNames: resolved instanceof Enum ? new Map(Object.entries(resolved.valuesById).map(([number, valueName]) => [Number(number), asciiBytes(goJsonString(valueName))])) : NO_ENUM_NAMES,
    messageType: resolved instanceof Type ? resolved : null,
    subPlan: null,
  };
}

/** .proto names are ASCII by the language's grammar; JsonBytes relies on that for what it copies byte by byte. */
function asciiBytes(text: string): Uint8Array {
  if (!/^[\x20-\x7e]*$/.test(text)) throw new Error(`wire-json: ${text} is not ASCII`);
  return Buffer.from(text, 'latin1');
}

function subPlanOf(field: FieldPlan): MessagePlan {
  if (field.subPlan === null) {
    if (field.messageType === null) throw new Error('wire-json: not a message field');
    field.subPlan = planFor(field.messageType);
  }
  return field.subPlan;
}

// ---- reading and writing -------------------------------------------------------

/** Where one message's fields are in the bytes, kept until all of it is read (fields come in any order). */
interface Found {
  /** Per single scalar: where its last occurrence's value starts, or -1. */
  readonly at: number[];
  /** Per repeated scalar: where each element starts (inside a packed run too). */
  readonly elements: (number[] | undefined)[];
  /** Per message field: start and end offsets, in pairs. */
  readonly spans: (number[] | undefined)[];
  /** Per oneof, the slot of the member seen last, or -1. */
  readonly oneofMembers: number[];
}

const UNUSED: never[] = [];

function newFound(plan: MessagePlan): Found {
  const count = plan.fields.length;
  return {
    at: new Array<number>(count).fill(-1),
    elements: plan.hasLists ? new Array<number[] | undefined>(count) : UNUSED,
    spans: plan.hasMessages ? new Array<number[] | undefined>(count) : UNUSED,
    oneofMembers: plan.oneofCount === 0 ? UNUSED : new Array<number>(plan.oneofCount).fill(-1),
  };
}

function gather(plan: MessagePlan, reader: JsonWireReader, start: number, end: number, found: Found, depth: number): void {
  reader.checkDepth(depth);
  reader.pos = start;
  while (reader.pos < end) {
    reader.varint(end);
    const number = reader.lo >>> 3;
    const wireType = reader.lo & 7;
    if (reader.hi !== 0 || number === 0) throw new WireError('invalid field number');
    const field = number < SMALL_FIELD_NUMBERS ? plan.byNumber[number] : plan.byLargeNumber.get(number);
    if (field === undefined) {
      reader.skip(wireType, end, depth);
      continue;
    }
    if (wireType !== field.wireType && !(wireType === WIRE_LENGTH && field.packable)) throw new WireError(`wrong wire type ${wireType} for field ${number}`);
    if (field.oneof >= 0) chooseOneofMember(found, field);
    switch (field.mode) {
      case Mode.Scalar:
        found.at[field.slot] = reader.pos;
        reader.skip(wireType, end, depth);
        break;
      case Mode.List: {
        const elements = (found.elements[field.slot] ??= []);
        if (wireType === field.wireType) {
          elements.push(reader.pos);
          reader.skip(wireType, end, depth);
        } else {
          const packedEnd = reader.lengthEnd(end);
          while (reader.pos < packedEnd) {
            elements.push(reader.pos);
            reader.skip(field.wireType, packedEnd, depth);
          }
        }
        break;
      }
      case Mode.Message:
      case Mode.Messages: {
        const valueEnd = reader.lengthEnd(end);
        const spans = found.spans[field.slot];
        if (spans === undefined) found.spans[field.slot] = [reader.pos, valueEnd];
        else spans.push(reader.pos, valueEnd);
        reader.pos = valueEnd;
        break;
      }
    }
  }
}

/** A oneof holds one member: any occurrence of a member replaces what the oneof held (gogo assigns a fresh value). */
function chooseOneofMember(found: Found, field: FieldPlan): void {
  const previous = found.oneofMembers[field.oneof] ?? -1;
  if (previous >= 0) {
    found.at[previous] = -1;
    if (found.spans !== UNUSED) found.spans[previous] = undefined;
  }
  found.oneofMembers[field.oneof] = field.slot;
}

const TRUE = asciiBytes('true');
const FALSE = asciiBytes('false');
const TWO_TO_32 = 4_294_967_296;
/** The high half below which a 64-bit value is exact as a JavaScript number (2^53). */
const EXACT_HIGH_LIMIT = 0x20_0000;

/**
 * Writes the scalar whose value starts at `at` (gather checked it lies
 * inside the answer), after `key` unless `key` is null. A zero value is
 * skipped, key and all, when `omitZero`; returns whether anything was written.
 */
function writeScalar(out: JsonBytes, reader: JsonWireReader, field: FieldPlan, at: number, key: Uint8Array | null, omitZero: boolean): boolean {
  const buf = reader.buf;
  const end = buf.length;
  reader.pos = at;
  switch (field.kind) {
    case Kind.Int32:
    case Kind.Uint32:
    case Kind.Sint32:
    case Kind.Enum: {
      reader.varint(end);
      // 32-bit fields keep the low half of the varint (a negative int32 comes as ten bytes).
      const low = reader.lo;
      const value = field.kind === Kind.Uint32 ? low : field.kind === Kind.Sint32 ? (low >>> 1) ^ -(low & 1) : low | 0;
      if (value === 0 && omitZero) return false;
      if (key !== null) out.ascii(key);
      const name = field.kind === Kind.Enum ? field.enumNames.get(value) : undefined;
      if (name !== undefined) out.ascii(name);
      else out.integer(value);
      return true;
    }
    case Kind.Bool: {
      reader.varint(end);
      // Go's generated code tests the whole 64-bit varint, not its low half.
      const value = reader.lo !== 0 || reader.hi !== 0;
      if (!value && omitZero) return false;
      if (key !== null) out.ascii(key);
      out.ascii(value ? TRUE : FALSE);
      return true;
    }
    case Kind.Int64:
    case Kind.Uint64:
    case Kind.Sint64:
    case Kind.Fixed64:
    case Kind.Sfixed64: {
      let lo: number;
      let hi: number;
      if (field.kind === Kind.Fixed64 || field.kind === Kind.Sfixed64) {
        const start = reader.fixed(8, end);
        lo = buf.readUInt32LE(start);
        hi = buf.readUInt32LE(start + 4);
      } else {
        reader.varint(end);
        lo = reader.lo;
        hi = reader.hi;
      }
      if (lo === 0 && hi === 0 && omitZero) return false;
      if (key !== null) out.ascii(key);
      write64(out, field.kind, lo, hi);
      return true;
    }
    case Kind.Fixed32:
    case Kind.Sfixed32:
    case Kind.Float:
    case Kind.Double: {
      const start = reader.fixed(field.kind === Kind.Double ? 8 : 4, end);
      const value = field.kind === Kind.Fixed32 ? buf.readUInt32LE(start)
        : field.kind === Kind.Sfixed32 ? buf.readInt32LE(start)
          : field.kind === Kind.Float ? buf.readFloatLE(start) : buf.readDoubleLE(start);
      if (value === 0 && omitZero) return false;
      if (key !== null) out.ascii(key);
      out.latin1(String(value));
      return true;
    }
    case Kind.String:
    case Kind.Bytes: {
      const valueEnd = reader.lengthEnd(end);
      const start = reader.pos;
      if (valueEnd === start && omitZero) return false;
      if (key !== null) out.ascii(key);
      if (field.kind === Kind.Bytes) out.base64(buf, start, valueEnd);
      else out.goString(buf, start, valueEnd);
      return true;
    }
    case Kind.Message:
      throw new WireError('a message is not a scalar');
  }
}

/** A 64-bit integer as jsonpb writes it: decimal in quotes, exact (through BigInt past 2^53). */
function write64(out: JsonBytes, kind: Kind, lo: number, hi: number): void {
  let unsignedLo = lo;
  let unsignedHi = hi;
  let negative = false;
  if (kind === Kind.Sint64) {
    // Zigzag: n >>> 1, negated and less one when n is odd.
    negative = (lo & 1) === 1;
    unsignedLo = ((lo >>> 1) | (hi << 31)) >>> 0;
    unsignedHi = hi >>> 1;
  } else if ((kind === Kind.Int64 || kind === Kind.Sfixed64) && hi >= 0x8000_0000) {
    out.latin1(`"${BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString()}"`);
    return;
  }
  if (unsignedHi < EXACT_HIGH_LIMIT) {
    const magnitude = unsignedHi * TWO_TO_32 + unsignedLo;
    out.quotedInteger(negative ? -magnitude - 1 : magnitude);
    return;
  }
  const magnitude = (BigInt(unsignedHi) << 32n) | BigInt(unsignedLo);
  out.latin1(`"${(negative ? -magnitude - 1n : magnitude).toString()}"`);
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;

function emit(plan: MessagePlan, reader: JsonWireReader, found: Found, out: JsonBytes, depth: number): void {
  out.byte(OPEN_BRACE);
  let written = false;
  for (const field of plan.fields) {
    const key = written ? field.nextKey : field.key;
    switch (field.mode) {
      case Mode.Scalar: {
        const at = found.at[field.slot] ?? -1;
        // proto3: a zero value is as good as absent, except for a oneof member, which counts once set.
        if (at < 0 || !writeScalar(out, reader, field, at, key, field.oneof < 0)) continue;
        break;
      }
      case Mode.List: {
        const elements = found.elements[field.slot];
        if (elements === undefined || elements.length === 0) continue;
        out.ascii(key);
        out.byte(OPEN_BRACKET);
        for (let i = 0; i < elements.length; i++) {
          if (i > 0) out.byte(COMMA);
          writeScalar(out, reader, field, elements[i] ?? 0, null, false);
        }
        out.byte(CLOSE_BRACKET);
        break;
      }
      case Mode.Message: {
        const spans = found.spans[field.slot];
        if (spans === undefined) continue;
        out.ascii(key);
        // Occurrences merge: reading them one after another into one record is protobuf's merge.
        const sub = subPlanOf(field);
        const subFound = newFound(sub);
        for (let i = 0; i < spans.length; i += 2) gather(sub, reader, spans[i] ?? 0, spans[i + 1] ?? 0, subFound, depth + 1);
        emit(sub, reader, subFound, out, depth + 1);
        break;
      }
      case Mode.Messages: {
        const spans = found.spans[field.slot];
        if (spans === undefined) continue;
        out.ascii(key);
        out.byte(OPEN_BRACKET);
        const sub = subPlanOf(field);
        for (let i = 0; i < spans.length; i += 2) {
          if (i > 0) out.byte(COMMA);
          const subFound = newFound(sub);
          gather(sub, reader, spans[i] ?? 0, spans[i + 1] ?? 0, subFound, depth + 1);
          emit(sub, reader, subFound, out, depth + 1);
        }
        out.byte(CLOSE_BRACKET);
        break;
      }
    }
    written = true;
  }
  out.byte(CLOSE_BRACE);
}
