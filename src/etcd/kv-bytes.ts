import type { KeyValueFields } from './records';
import { MalformedMessage, WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireReader, bytesFieldSize, encodeBigVarint, tag, varintSize, writeBytesField, writeVarint } from './protowire';

/** mvccpb.KeyValue's field numbers. */
const KEY = 1;
const CREATE_REVISION = 2;
const MOD_REVISION = 3;
const VERSION = 4;
const VALUE = 5;
const LEASE = 6;

const EMPTY = Buffer.alloc(0);

/** Where each field sits in the bytes (offsets; -1 for a field the message leaves out). */
interface Layout {
  readonly keyStart: number;
  readonly keyEnd: number;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The value field including its tag and length: what keys_only leaves out. */
  readonly valueFieldStart: number;
  readonly valueFieldEnd: number;
  readonly valueStart: number;
  readonly valueEnd: number;
  /** The lease varint, read only when asked for (it needs 64 bits). */
  readonly leaseAt: number;
}

function parseLayout(bytes: Buffer): Layout {
  const reader = new WireReader(bytes);
  let keyStart = -1;
  let keyEnd = -1;
  let createRevision = 0;
  let modRevision = 0;
  let version = 0;
  let valueFieldStart = -1;
  let valueFieldEnd = -1;
  let valueStart = -1;
  let valueEnd = -1;
  let leaseAt = -1;
  const expect = (wireType: number, wanted: number, field: number): void => {
    if (wireType !== wanted) throw new MalformedMessage(`KeyValue field ${field} has wire type ${wireType}`);
  };
  while (!reader.done()) {
    const fieldStart = reader.position;
    const { field, wireType } = reader.tag();
    switch (field) {
      case KEY: {
        expect(wireType, WIRE_LENGTH_DELIMITED, field);
        ({ start: keyStart, end: keyEnd } = reader.lengthDelimited());
        break;
      }
      case CREATE_REVISION:
        expect(wireType, WIRE_VARINT, field);
        createRevision = reader.varint();
        break;
      case MOD_REVISION:
        expect(wireType, WIRE_VARINT, field);
        modRevision = reader.varint();
        break;
      case VERSION:
        expect(wireType, WIRE_VARINT, field);
        version = reader.varint();
        break;
      case VALUE: {
        expect(wireType, WIRE_LENGTH_DELIMITED, field);
        ({ start: valueStart, end: valueEnd } = reader.lengthDelimited());
        valueFieldStart = fieldStart;
        valueFieldEnd = reader.position;
        break;
      }
      case LEASE:
        expect(wireType, WIRE_VARINT, field);
        leaseAt = reader.position;
        reader.bigVarint();
        break;
      default:
        // A field a newer etcd added: it stays in the bytes and goes back to clients as it came.
        reader.skip(wireType);
    }
  }
  return { keyStart, keyEnd, createRevision, modRevision, version, valueFieldStart, valueFieldEnd, valueStart, valueEnd, leaseAt };
}

/**
 * One key as etcd encodes an `mvccpb.KeyValue`, read in place: the fields
 * are found on first use (one pass over a few tags; the value is stepped
 * over, not read) and handed out as views into the bytes, never copies.
 * Field names are mvccpb's, so code that reads a key's fields reads them the
 * same way from a view as from a decoded message.
 */
export class EncodedKeyValue implements KeyValueFields {
  private layout: Layout | undefined;

  /** `bytes` must stay unchanged for the view's life (LMDB hands out copies; upstream messages are never reused). */
  constructor(readonly bytes: Buffer) {}

  /** A view whose bytes are checked now: for input from outside (the upstream, a file), so nothing malformed is stored. */
  static checked(bytes: Buffer): EncodedKeyValue {
    const view = new EncodedKeyValue(bytes);
    view.fields();
    return view;
  }

  private fields(): Layout {
    this.layout ??= parseLayout(this.bytes);
    return this.layout;
  }

  get key(): Buffer {
    const { keyStart, keyEnd } = this.fields();
    return keyStart < 0 ? EMPTY : this.bytes.subarray(keyStart, keyEnd);
  }

  get create_revision(): number {
    return this.fields().createRevision;
  }

  get mod_revision(): number {
    return this.fields().modRevision;
  }

  get version(): number {
    return this.fields().version;
  }

  get value(): Buffer {
    const { valueStart, valueEnd } = this.fields();
    return valueStart < 0 ? EMPTY : this.bytes.subarray(valueStart, valueEnd);
  }

  /** Decimal int64 ("0": no lease), as proto-loader gives int64s: lease IDs use all 64 bits. */
  get lease(): string {
    const { leaseAt } = this.fields();
    if (leaseAt < 0) return '0';
    return BigInt.asIntN(64, new WireReader(this.bytes, leaseAt).bigVarint()).toString();
  }

  /** The KeyValue as a keys_only Range gives it: without its value field (etcd's answer has none). */
  withoutValue(): Buffer {
    const { valueFieldStart, valueFieldEnd } = this.fields();
    if (valueFieldStart < 0) return this.bytes;
    if (valueFieldEnd === this.bytes.length) return this.bytes.subarray(0, valueFieldStart);
    return Buffer.concat([this.bytes.subarray(0, valueFieldStart), this.bytes.subarray(valueFieldEnd)]);
  }
}

/**
 * Encodes a KeyValue exactly as etcd does: fields in number order, zero
 * values (0, empty bytes, no lease) left out.
 */
export function encodeKeyValue(fields: KeyValueFields): EncodedKeyValue {
  const lease = fields.lease === '0' || fields.lease === '' ? null : encodeBigVarint(BigInt(fields.lease));
  const numbers: [number, number][] = [
    [CREATE_REVISION, fields.create_revision],
    [MOD_REVISION, fields.mod_revision],
    [VERSION, fields.version],
  ];
  let size = 0;
  if (fields.key.length > 0) size += bytesFieldSize(fields.key.length);
  for (const [, value] of numbers) if (value !== 0) size += 1 + varintSize(value);
  if (fields.value.length > 0) size += bytesFieldSize(fields.value.length);
  if (lease !== null) size += 1 + lease.length;

  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  if (fields.key.length > 0) at = writeBytesField(bytes, at, KEY, fields.key);
  for (const [field, value] of numbers) {
    if (value === 0) continue;
    bytes[at] = tag(field, WIRE_VARINT);
    at = writeVarint(bytes, at + 1, value);
  }
  if (fields.value.length > 0) at = writeBytesField(bytes, at, VALUE, fields.value);
  if (lease !== null) {
    bytes[at] = tag(LEASE, WIRE_VARINT);
    lease.copy(bytes, at + 1);
  }
  return new EncodedKeyValue(bytes);
}
