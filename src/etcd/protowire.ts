/**
 * The protobuf wire format, as far as the proxy reads and writes etcd's
 * messages by hand: varints, field tags, and walking a message's top-level
 * fields. Everything works on Buffers in place; nothing here copies bytes
 * except where it says so.
 */

/** Wire types (protobuf encoding spec). */
export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

/** Input that is not a well-formed message: truncated, or a field of an unexpected wire type. */
export class MalformedMessage extends Error {
  constructor(what: string) {
    super(`etcd-cache-proxy: malformed protobuf message: ${what}`);
    this.name = 'MalformedMessage';
  }
}

const TWO_POW_7 = 0x80;
const UINT64_MASK = (1n << 64n) - 1n;

/** Bytes a non-negative safe integer takes as a varint. */
export function varintSize(value: number): number {
  let size = 1;
  // Division, not shifts: JS shifts work on 32 bits and revisions may pass 2^32.
  for (let rest = value; rest >= TWO_POW_7; rest = Math.floor(rest / TWO_POW_7)) size += 1;
  return size;
}

/** Writes a non-negative safe integer as a varint at `offset`; returns the offset after it. */
export function writeVarint(target: Buffer, offset: number, value: number): number {
  let at = offset;
  let rest = value;
  while (rest >= TWO_POW_7) {
    target[at] = (rest % TWO_POW_7) | TWO_POW_7;
    rest = Math.floor(rest / TWO_POW_7);
    at += 1;
  }
  target[at] = rest;
  return at + 1;
}

/**
 * The varint of a 64-bit integer of either sign: int64 and uint64 share the
 * encoding (a negative int64 is its two's complement, ten bytes), as etcd's
 * lease IDs and cluster IDs need.
 */
export function encodeBigVarint(value: bigint): Buffer {
  let rest = BigInt.asUintN(64, value);
  const bytes: number[] = [];
  while (rest >= 0x80n) {
    bytes.push(Number(rest & 0x7fn) | TWO_POW_7);
    rest >>= 7n;
  }
  bytes.push(Number(rest));
  return Buffer.from(bytes);
}

/** The tag that starts a field: its number and wire type. Every field etcd's messages use has a one-byte tag. */
export function tag(field: number, wireType: number): number {
  return field * 8 + wireType;
}

/** Writes tag, length and payload of a length-delimited field; returns the offset after it. */
export function writeBytesField(target: Buffer, offset: number, field: number, payload: Buffer): number {
  target[offset] = tag(field, WIRE_LENGTH_DELIMITED);
  const at = writeVarint(target, offset + 1, payload.length);
  payload.copy(target, at);
  return at + payload.length;
}

/** Bytes a length-delimited field with this payload length takes, tag included (every tag etcd uses is one byte). */
export function bytesFieldSize(payloadLength: number): number {
  return 1 + varintSize(payloadLength) + payloadLength;
}

/**
 * Reads a message's fields in order. Positions are offsets into `bytes`;
 * reads never go past `end`, so a truncated message is an error, not a read
 * of whatever follows it.
 */
export class WireReader {
  /** Offset of the next byte to read. */
  position: number;

  constructor(
    readonly bytes: Buffer,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.position = start;
  }

  done(): boolean {
    return this.position >= this.end;
  }

  /** A varint as a number; a value past 2^53 (no revision gets there) is refused rather than rounded. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (this.position >= this.end) throw new MalformedMessage('truncated varint');
      const byte = this.bytes[this.position] as number;
      this.position += 1;
      result += (byte & 0x7f) * scale;
      if (byte < TWO_POW_7) break;
      scale *= TWO_POW_7;
      if (scale > 2 ** 63) throw new MalformedMessage('varint longer than ten bytes');
    }
    if (!Number.isSafeInteger(result)) throw new MalformedMessage(`varint ${result} beyond 2^53`);
    return result;
  }

  /** A varint as a 64-bit unsigned integer (an int64 reads as its two's complement: see BigInt.asIntN). */
  bigVarint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.position >= this.end) throw new MalformedMessage('truncated varint');
      const byte = this.bytes[this.position] as number;
      this.position += 1;
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < TWO_POW_7) break;
      shift += 7n;
      if (shift > 63n) throw new MalformedMessage('varint longer than ten bytes');
    }
    return result & UINT64_MASK;
  }

  /** The next field's tag: { field, wireType }. */
  tag(): { field: number; wireType: number } {
    const value = this.varint();
    return { field: Math.floor(value / 8), wireType: value % 8 };
  }

  /** The payload of a length-delimited field: [start, end) offsets, the reader placed after it. */
  lengthDelimited(): { start: number; end: number } {
    const length = this.varint();
    const start = this.position;
    const end = start + length;
    if (end > this.end) throw new MalformedMessage('length-delimited field runs past the message');
    this.position = end;
    return { start, end };
  }

  /** Steps over a field of the given wire type (an unknown field: kept in the bytes, not interpreted). */
  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.bigVarint();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LENGTH_DELIMITED:
        this.lengthDelimited();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        throw new MalformedMessage(`wire type ${wireType}`);
    }
  }

  private advance(bytes: number): void {
    if (this.position + bytes > this.end) throw new MalformedMessage('truncated fixed-width field');
    this.position += bytes;
  }
}

/** A message with one repeated message field taken out: its items in order, and every other field. */
export interface SplitMessage {
  /** Each item's encoded message: views into the input, not copies. */
  readonly items: Buffer[];
  /** The message without that field: a view when the other fields are contiguous (etcd puts repeated fields last), else a copy. */
  readonly rest: Buffer;
}

/**
 * Takes a repeated, length-delimited field (`events` of a WatchResponse,
 * `kvs` of a RangeResponse) out of an encoded message, so its items can be
 * kept as bytes and the few other fields decoded on their own.
 */
export function splitRepeatedField(message: Buffer, field: number): SplitMessage {
  const reader = new WireReader(message);
  const items: Buffer[] = [];
  const others: { start: number; end: number }[] = [];
  while (!reader.done()) {
    const fieldStart = reader.position;
    const { field: number, wireType } = reader.tag();
    if (number === field && wireType === WIRE_LENGTH_DELIMITED) {
      const { start, end } = reader.lengthDelimited();
      items.push(message.subarray(start, end));
      continue;
    }
    reader.skip(wireType);
    const last = others[others.length - 1];
    if (last !== undefined && last.end === fieldStart) last.end = reader.position;
    else others.push({ start: fieldStart, end: reader.position });
  }
  const [only] = others;
  const rest =
    others.length === 0 ? Buffer.alloc(0) : others.length === 1 && only !== undefined ? message.subarray(only.start, only.end) : Buffer.concat(others.map((r) => message.subarray(r.start, r.end)));
  return { items, rest };
}
