// The writer etcd-cache-proxy's gateway used before src/gateway/wire-json.ts:
// protobufjs decodes the answer into objects, which are then written as
// Go's jsonpb writes them. Kept only as the reference the wire-json unit
// test and bench/wire-json.ts compare against (and time).
import { Enum, Type, type Field, type Message } from 'protobufjs';
import { goJsonString } from '../../src/gateway/go-string';

/** protobufjs decode, then the objects as JSON. */
export function decodedJson(type: Type, bytes: Buffer): string {
  return writeMessage(type, type.decode(bytes));
}

function writeMessage(type: Type, message: Message | Record<string, unknown>): string {
  const parts: string[] = [];
  const own = message as Record<string, unknown>;
  for (const field of type.fieldsArray) {
    const value = own[field.name];
    if (value === undefined || value === null) continue;
    // A oneof member counts when it is set, zero or not; other fields only when not zero.
    if (field.partOf !== null ? !Object.prototype.hasOwnProperty.call(own, field.name) : isZero(field, value)) continue;
    const text = field.repeated && Array.isArray(value) ? `[${value.map((item: unknown) => writeValue(field, item)).join(',')}]` : writeValue(field, value);
    parts.push(`${goJsonString(field.name)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

function writeValue(field: Field, value: unknown): string {
  const resolved = field.resolvedType;
  if (resolved instanceof Type) return writeMessage(resolved, value as Message);
  if (resolved instanceof Enum) {
    const name = resolved.valuesById[Number(value)];
    return name === undefined ? String(Number(value)) : goJsonString(name);
  }
  switch (field.type) {
    case 'bytes':
      return `"${Buffer.from(value as Uint8Array).toString('base64')}"`;
    case 'string':
      return goJsonString(String(value));
    case 'bool':
      return value === true ? 'true' : 'false';
    case 'int64':
    case 'sint64':
    case 'sfixed64':
    case 'uint64':
    case 'fixed64':
      return `"${longToString(value, field.type === 'uint64' || field.type === 'fixed64')}"`;
    default:
      return String(Number(value));
  }
}

function isZero(field: Field, value: unknown): boolean {
  if (field.repeated) return !Array.isArray(value) || value.length === 0;
  if (field.resolvedType instanceof Type) return false;
  // protobufjs's default for an absent bytes field is an empty plain array.
  if (value instanceof Uint8Array || Array.isArray(value)) return value.length === 0;
  if (typeof value === 'string') return value === '';
  if (typeof value === 'boolean') return !value;
  if (typeof value === 'number') return value === 0;
  if (isLong(value)) return value.isZero();
  return false;
}

function longToString(value: unknown, unsigned: boolean): string {
  if (typeof value === 'number') return String(value);
  if (isLong(value)) return unsigned && !value.unsigned ? value.toUnsigned().toString() : value.toString();
  return String(value);
}

/** The parts of a Long (protobufjs's 64-bit integers) this file reads. */
interface LongLike {
  readonly unsigned: boolean;
  isZero(): boolean;
  toUnsigned(): LongLike;
  toString(): string;
}

function isLong(value: unknown): value is LongLike {
  return typeof value === 'object' && value !== null && typeof (value as Partial<LongLike>).isZero === 'function' && typeof (value as Partial<LongLike>).toUnsigned === 'function';
}

