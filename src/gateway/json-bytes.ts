import { goJsonStringOfBytes } from './go-string';

const QUOTE = 0x22;
const MINUS = 0x2d;
const ZERO = 0x30;

/**
 * A JSON text written as bytes into one buffer that grows by doubling.
 * Nothing is kept per piece: a large answer is a few native copies, not
 * thousands of strings for the garbage collector to move before a join.
 */
export class JsonBytes {
  private buf: Buffer;
  private length = 0;
  /** Whether every byte so far is ASCII, so that the text can be read back as latin1 (cheaper than UTF-8). */
  private asciiOnly = true;

  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, capacity));
  }

  /** The buffer, with room for `count` more bytes. */
  private room(count: number): Buffer {
    if (this.length + count > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + count));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    return this.buf;
  }

  byte(code: number): void {
    this.room(1)[this.length++] = code;
  }

  /** Precomputed ASCII (keys, punctuation): copied in a JavaScript loop, cheaper than a native call for a few bytes. */
  ascii(bytes: Uint8Array): void {
    const buf = this.room(bytes.length);
    let at = this.length;
    for (let i = 0; i < bytes.length; i++) buf[at++] = bytes[i] ?? 0;
    this.length = at;
  }

  /** Text known to be ASCII (base64, numbers as Go prints them). */
  latin1(text: string): void {
    this.length += this.room(text.length).write(text, this.length, 'latin1');
  }

  /** Any text, as UTF-8. */
  text(text: string): void {
    const written = this.room(text.length * 3).write(text, this.length, 'utf8');
    if (written !== text.length) this.asciiOnly = false;
    this.length += written;
  }

  /** A safe integer in decimal, written digit by digit: no string made. */
  integer(value: number): void {
    let rest = value;
    if (rest < 0) {
      this.byte(MINUS);
      rest = -rest;
    }
    let digits = 1;
    for (let power = 10; power <= rest; power *= 10) digits++;
    const buf = this.room(digits);
    let at = this.length + digits;
    // Exact below 2^53: rest / 10 is off by less than 0.1 from its true value.
    do {
      buf[--at] = ZERO + (rest % 10);
      rest = Math.floor(rest / 10);
    } while (rest > 0);
    this.length += digits;
  }

  /** A quoted integer (jsonpb's 64-bit fields). */
  quotedInteger(value: number): void {
    this.byte(QUOTE);
    this.integer(value);
    this.byte(QUOTE);
  }

  /** bytes: padded standard base64 between quotes, encoded from the source's own memory. */
  base64(source: Buffer, start: number, end: number): void {
    this.byte(QUOTE);
    if (end > start) this.latin1(source.toString('base64', start, end));
    this.byte(QUOTE);
  }

  /** A protobuf string field's bytes as Go writes them. */
  goString(source: Buffer, start: number, end: number): void {
    this.text(goJsonStringOfBytes(source.subarray(start, end)));
  }

  toString(): string {
    return this.buf.toString(this.asciiOnly ? 'latin1' : 'utf8', 0, this.length);
  }

  /** The bytes written; a view of the (possibly larger) buffer, not a copy. */
  toBuffer(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}
