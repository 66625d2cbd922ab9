import { EncodedKeyValue } from './kv-bytes';
import type { EventType } from './records';
import { MalformedMessage, WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireReader, bytesFieldSize, tag, writeBytesField } from './protowire';

/** mvccpb.Event's field numbers, and its type enum. */
const TYPE = 1;
const KV = 2;
const PREV_KV = 3;
const DELETE = 1;

const EMPTY_KV = new EncodedKeyValue(Buffer.alloc(0));

interface Fields {
  readonly type: EventType;
  readonly kv: EncodedKeyValue;
}

/** Reads type and kv from [0, end): the event without its prev_kv. */
function parseFields(bytes: Buffer, end: number): Fields {
  const reader = new WireReader(bytes, 0, end);
  let type: EventType = 'PUT';
  let kv = EMPTY_KV;
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    if (field === TYPE && wireType === WIRE_VARINT) {
      const value = reader.varint();
      if (value > DELETE) throw new MalformedMessage(`event type ${value}`);
      type = value === DELETE ? 'DELETE' : 'PUT';
    } else if (field === KV && wireType === WIRE_LENGTH_DELIMITED) {
      const { start, end: kvEnd } = reader.lengthDelimited();
      kv = new EncodedKeyValue(bytes.subarray(start, kvEnd));
    } else if (field === PREV_KV || field === TYPE || field === KV) {
      throw new MalformedMessage(`Event field ${field} has wire type ${wireType} or is out of place`);
    } else {
      reader.skip(wireType);
    }
  }
  return { type, kv };
}

/**
 * One event as etcd encodes an `mvccpb.Event` (type, kv, prev_kv), with
 * prev_kv last, so the event a watcher without prev_kv gets is a prefix of
 * the bytes: `withoutPrevKvLength` says where it ends. Fields are read on
 * first use, as views into the bytes.
 */
export class EncodedEvent {
  private parsed: Fields | undefined;
  private previous: EncodedKeyValue | null | undefined;

  constructor(
    readonly bytes: Buffer,
    /** Where the prev_kv field starts (the length of the whole event when it has none). */
    readonly withoutPrevKvLength: number,
  ) {}

  /**
   * An event as the upstream sent it, checked whole (it is about to be
   * stored). etcd writes prev_kv last; should an event come otherwise (a
   * field a newer etcd adds after it), it is rewritten with prev_kv moved last.
   */
  static fromWire(bytes: Buffer): EncodedEvent {
    const reader = new WireReader(bytes);
    let prevField: { start: number; end: number; payloadStart: number } | null = null;
    while (!reader.done()) {
      const start = reader.position;
      const { field, wireType } = reader.tag();
      if (field === PREV_KV && wireType === WIRE_LENGTH_DELIMITED) {
        const payload = reader.lengthDelimited();
        prevField = { start, end: reader.position, payloadStart: payload.start };
      } else {
        reader.skip(wireType);
      }
    }
    let event: EncodedEvent;
    if (prevField === null) event = new EncodedEvent(bytes, bytes.length);
    else if (prevField.end === bytes.length) event = new EncodedEvent(bytes, prevField.start);
    else {
      const moved = Buffer.concat([bytes.subarray(0, prevField.start), bytes.subarray(prevField.end), bytes.subarray(prevField.start, prevField.end)]);
      event = new EncodedEvent(moved, bytes.length - (prevField.end - prevField.start));
    }
    event.check();
    return event;
  }

  private fields(): Fields {
    this.parsed ??= parseFields(this.bytes, this.withoutPrevKvLength);
    return this.parsed;
  }

  /** Reads every field, so malformed input fails here rather than when a watcher is sent it. */
  private check(): void {
    EncodedKeyValue.checked(this.kv.bytes);
    const previous = this.prev_kv;
    if (previous !== undefined) EncodedKeyValue.checked(previous.bytes);
  }

  get type(): EventType {
    return this.fields().type;
  }

  /** For a DELETE: the key and the deleting revision (mod_revision), as etcd sends it. */
  get kv(): EncodedKeyValue {
    return this.fields().kv;
  }

  get prev_kv(): EncodedKeyValue | undefined {
    if (this.previous === undefined) {
      if (this.withoutPrevKvLength === this.bytes.length) this.previous = null;
      else {
        const reader = new WireReader(this.bytes, this.withoutPrevKvLength);
        const { field, wireType } = reader.tag();
        if (field !== PREV_KV || wireType !== WIRE_LENGTH_DELIMITED) throw new MalformedMessage('no prev_kv where the event says it starts');
        const { start, end } = reader.lengthDelimited();
        this.previous = new EncodedKeyValue(this.bytes.subarray(start, end));
      }
    }
    return this.previous ?? undefined;
  }

  /** The event as a watcher that did not ask for prev_kv gets it: a view, not a copy. */
  withoutPrevKv(): Buffer {
    return this.bytes.subarray(0, this.withoutPrevKvLength);
  }
}

/** Encodes an event as etcd does: type only when DELETE (PUT is the zero value), then kv, then prev_kv. */
export function encodeEvent(type: EventType, kv: EncodedKeyValue, prevKv?: EncodedKeyValue): EncodedEvent {
  const typeSize = type === 'DELETE' ? 2 : 0;
  const withoutPrevKvLength = typeSize + bytesFieldSize(kv.bytes.length);
  const size = withoutPrevKvLength + (prevKv === undefined ? 0 : bytesFieldSize(prevKv.bytes.length));
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  if (type === 'DELETE') {
    bytes[0] = tag(TYPE, WIRE_VARINT);
    bytes[1] = DELETE;
    at = 2;
  }
  at = writeBytesField(bytes, at, KV, kv.bytes);
  if (prevKv !== undefined) writeBytesField(bytes, at, PREV_KV, prevKv.bytes);
  return new EncodedEvent(bytes, withoutPrevKvLength);
}
