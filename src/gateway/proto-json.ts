import { Enum, Type, type Field } from 'protobufjs';
import { etcdProtoRoot } from '../etcd/proto';
import { decodeGoBase64 } from './go-base64';
import { parseDocument, type JsonValue } from './go-json';
import { wireToJsonBuffer } from './wire-json';

// Strings as Go writes them now live with the rest of the answer writing; kept importable from here.
export { goJsonString } from './go-string';

/**
 * etcd's gateway maps JSON to protobuf with golang/protobuf's jsonpb, as
 * grpc-gateway configures it (OrigName, no defaults). In requests: the
 * .proto field name or its lowerCamelCase JSON name (camel wins when both
 * are given), int64 as a number or a quoted number, bytes as padded
 * standard base64, enums by name or number, unknown fields ignored, null as
 * absent. In answers: .proto field names in declaration order, 64-bit
 * integers as strings, bytes as base64, enums by name, zero values left
 * out. Errors carry the Go messages etcd's gateway answers with.
 */
export type EncodeResult = { readonly bytes: Buffer } | { readonly error: string };

/** A field value as protobufjs's fromObject takes it. */
type PlainValue = string | number | boolean | Buffer | PlainObject | PlainValue[];
interface PlainObject {
  [field: string]: PlainValue;
}

class JsonMappingError {
  constructor(readonly message: string) {}
}

export function lookupMessage(name: string): Type {
  // The reflection the gRPC codecs use too (which also sets how deep protobufjs lets messages nest).
  return etcdProtoRoot().lookupType(name);
}

/** JSON (one request object, or null for an empty body) to the protobuf bytes of `type`. */
export function encodeRequest(type: Type, json: JsonValue | null): EncodeResult {
  try {
    const plain = json === null ? {} : readMessage(type, json);
    return { bytes: Buffer.from(type.encode(type.fromObject(plain)).finish()) };
  } catch (error) {
    if (error instanceof JsonMappingError) return { error: error.message };
    // Anything else protobufjs refuses (nesting past its limit, say) is the body's fault too, and
    // must not escape: a streaming body is read in an event handler, where a throw ends the process.
    return { error: `etcd-cache-proxy: request not mapped to protobuf: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** The JSON grpc-gateway writes for a message of `type` (UTF-8), read straight from its wire bytes. */
export function responseJson(type: Type, bytes: Buffer): Buffer {
  return wireToJsonBuffer(type, bytes);
}

/** protoc's JSON name: each underscore dropped and the letter after it capitalised. */
export function jsonName(fieldName: string): string {
  return fieldName.replace(/_(.)/g, (_match, letter: string) => letter.toUpperCase());
}

// ---- JSON → protobuf ------------------------------------------------------

function readMessage(type: Type, json: JsonValue): PlainObject {
  if (json.kind === 'null') return {};
  if (json.kind !== 'object') throw typeError(json, 'map[string]json.RawMessage');
  const remaining = new Map(json.fields);
  const take = (field: Field): JsonValue | undefined => {
    const camel = jsonName(field.name);
    let value: JsonValue | undefined;
    if (remaining.has(field.name)) value = remaining.get(field.name);
    if (remaining.has(camel)) value = remaining.get(camel);
    remaining.delete(field.name);
    remaining.delete(camel);
    return value;
  };
  const plain: PlainObject = {};
  // Go reads the plain fields first, then the oneof members.
  const ordered = [...type.fieldsArray.filter((f) => f.partOf === null), ...type.fieldsArray.filter((f) => f.partOf !== null)];
  for (const field of ordered) {
    const value = take(field);
    if (value === undefined || value.kind === 'null') continue;
    const read = field.repeated ? readRepeated(field, value) : readSingle(field, value);
    if (read !== undefined) plain[field.name] = read;
  }
  return plain;
}

function readRepeated(field: Field, json: JsonValue): PlainValue[] {
  if (json.kind !== 'array') throw typeError(json, '[]json.RawMessage');
  return json.items.map((item) => readSingle(field, item) ?? zeroOf(field));
}

/** One value of a field (an element, for repeated ones); undefined for null. */
function readSingle(field: Field, json: JsonValue): PlainValue | undefined {
  if (json.kind === 'null') return undefined;
  const resolved = field.resolvedType;
  if (resolved instanceof Type) return readMessage(resolved, json);
  if (resolved instanceof Enum) return readEnum(resolved, json);
  switch (field.type) {
    case 'bytes': {
      // encoding/json also fills a []byte from an array of byte-sized numbers.
      if (json.kind === 'array') return Buffer.from(json.items.map((item) => Number(readInteger(item, 'uint8', 0n, 255n, false))));
      if (json.kind !== 'string') throw typeError(json, '[]uint8');
      const decoded = decodeGoBase64(json.value);
      if ('error' in decoded) throw new JsonMappingError(decoded.error);
      return decoded.bytes;
    }
    case 'string':
      if (json.kind !== 'string') throw typeError(json, 'string');
      return json.value;
    case 'bool':
      if (json.kind !== 'bool') throw typeError(json, 'bool');
      return json.value;
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return readInteger(json, 'int64', -(2n ** 63n), 2n ** 63n - 1n);
    case 'uint64':
    case 'fixed64':
      return readInteger(json, 'uint64', 0n, 2n ** 64n - 1n);
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return Number(readInteger(json, 'int32', -(2n ** 31n), 2n ** 31n - 1n));
    case 'uint32':
    case 'fixed32':
      return Number(readInteger(json, 'uint32', 0n, 2n ** 32n - 1n));
    default:
      throw new JsonMappingError(`etcd-cache-proxy: field ${field.name} of type ${field.type} is not mapped from JSON`);
  }
}

function readEnum(enumType: Enum, json: JsonValue): number {
  if (json.kind === 'string') {
    // Only names: protobufjs's `values` inherits the numbers-to-names map.
    const value = Object.prototype.hasOwnProperty.call(enumType.values, json.raw) ? enumType.values[json.raw] : undefined;
    if (value === undefined) throw new JsonMappingError(`unknown value ${goQuote(json.raw)} for enum ${goTypeName(enumType)}`);
    return value;
  }
  return Number(readInteger(json, goTypeName(enumType), -(2n ** 31n), 2n ** 31n - 1n));
}

/**
 * An integer as Go reads one into an int64 (and kin): a JSON number without
 * fraction or exponent, or the same quoted, whose inside Go parses as a JSON
 * document of its own (for protobuf fields; not for the bytes of a []byte
 * spelled as an array). Kept as a decimal string: no precision is lost.
 */
function readInteger(json: JsonValue, goType: string, min: bigint, max: bigint, quotedAllowed = true): string {
  let value = json;
  // jsonpb unquotes integer fields itself; encoding/json (the elements of a []byte) does not.
  if (json.kind === 'string' && quotedAllowed) {
    const inner = parseDocument(json.raw);
    if ('error' in inner) throw new JsonMappingError(inner.error);
    value = inner.value;
  }
  if (value.kind === 'null') return '0';
  if (value.kind !== 'number') throw typeError(value, goType);
  const valid = /^-?\d+$/.test(value.text) && BigInt(value.text) >= min && BigInt(value.text) <= max;
  if (!valid) throw new JsonMappingError(`json: cannot unmarshal number ${value.text} into Go value of type ${goType}`);
  return BigInt(value.text).toString();
}

function zeroOf(field: Field): PlainValue {
  if (field.resolvedType instanceof Type) return {};
  if (field.type === 'bytes') return Buffer.alloc(0);
  if (field.type === 'string') return '';
  if (field.type === 'bool') return false;
  return 0;
}

function typeError(json: JsonValue, goType: string): JsonMappingError {
  return new JsonMappingError(`json: cannot unmarshal ${json.kind} into Go value of type ${goType}`);
}

/** The Go type name of a generated enum: "etcdserverpb.RangeRequest_SortOrder". */
function goTypeName(enumType: Enum): string {
  const nesting: string[] = [enumType.name];
  let parent = enumType.parent;
  while (parent instanceof Type) {
    nesting.unshift(parent.name);
    parent = parent.parent;
  }
  const packageName = parent === null ? '' : parent.fullName.replace(/^\./, '');
  return packageName === '' ? nesting.join('_') : `${packageName}.${nesting.join('_')}`;
}

/** Go's %q for the bytes between a JSON string's quotes (printable ASCII kept, the rest escaped). */
function goQuote(raw: string): string {
  return JSON.stringify(raw).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
