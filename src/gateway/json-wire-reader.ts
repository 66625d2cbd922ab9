// The protobuf wire format, read in place for the JSON writer: varints as two
// 32-bit halves (any 64-bit value, no allocation), lengths, fixed-size values,
// and stepping over anything, groups included. etcd/protowire.ts's reader
// serves the store and the mirror, which need safe-integer revisions and
// views of fields; this one serves a generic walk over every field of every
// etcd answer, where the JSON gateway spends its time.
import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LENGTH_DELIMITED, WIRE_VARINT } from '../etcd/protowire';

export { WIRE_FIXED32, WIRE_FIXED64, WIRE_VARINT };
export const WIRE_LENGTH = WIRE_LENGTH_DELIMITED;
/** Proto2 groups: etcd has none, but an unknown one is stepped over, not refused. */
const WIRE_GROUP_START = 3;
const WIRE_GROUP_END = 4;

/** Message nesting accepted, as src/etcd/proto.ts allows protobufjs (a Txn in a Txn as deep as --max-txn-ops lets etcd go). */
const NESTING_LIMIT = 1_024;

export class WireError extends Error {
  constructor(message: string) {
    super(`wire-json: ${message}`);
  }
}

const truncated = (): WireError => new WireError('truncated message');

/** A position in the answer, and the last varint read as two unsigned 32-bit halves. */
export class JsonWireReader {
  pos = 0;
  lo = 0;
  hi = 0;

  constructor(readonly buf: Buffer) {}

  varint(end: number): void {
    const buf = this.buf;
    let pos = this.pos;
    let lo = 0;
    let byte = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (pos >= end) throw truncated();
      byte = buf[pos++] ?? 0;
      lo |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        this.lo = lo >>> 0;
        this.hi = 0;
        this.pos = pos;
        return;
      }
    }
    if (pos >= end) throw truncated();
    byte = buf[pos++] ?? 0;
    lo |= (byte & 0x0f) << 28;
    let hi = (byte & 0x7f) >> 4;
    // Bytes 6 to 10 fill the high half; bits past 64 in the tenth are dropped, as Go does. An eleventh is an error.
    for (let shift = 3; byte >= 0x80; shift += 7) {
      if (shift > 31) throw new WireError('varint longer than 10 bytes');
      if (pos >= end) throw truncated();
      byte = buf[pos++] ?? 0;
      hi |= (byte & 0x7f) << shift;
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
    this.pos = pos;
  }

  /** Reads a length prefix and returns where the value it announces ends. */
  lengthEnd(end: number): number {
    this.varint(end);
    if (this.hi !== 0 || this.lo > end - this.pos) throw new WireError('length past the end of the message');
    return this.pos + this.lo;
  }

  /** Steps over `size` bytes and returns where they start. */
  fixed(size: number, end: number): number {
    const at = this.pos;
    if (end - at < size) throw truncated();
    this.pos = at + size;
    return at;
  }

  /** Steps over one value of `wireType` (a whole group for a group start). */
  skip(wireType: number, end: number, depth: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint(end);
        return;
      case WIRE_FIXED64:
        this.fixed(8, end);
        return;
      case WIRE_LENGTH:
        this.pos = this.lengthEnd(end);
        return;
      case WIRE_FIXED32:
        this.fixed(4, end);
        return;
      case WIRE_GROUP_START:
        // A group (proto2) runs to its end-group tag; groups may nest.
        this.checkDepth(depth);
        for (;;) {
          this.varint(end);
          if (this.hi !== 0) throw new WireError('invalid field number');
          if ((this.lo & 7) === WIRE_GROUP_END) return;
          this.skip(this.lo & 7, end, depth + 1);
        }
      default:
        throw new WireError(`unexpected wire type ${wireType}`);
    }
  }

  /** Messages and groups nest at most NESTING_LIMIT deep: past that the answer is refused, before the stack is at risk. */
  checkDepth(depth: number): void {
    if (depth > NESTING_LIMIT) throw new WireError('nested too deep');
  }
}
