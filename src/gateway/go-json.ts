/**
 * JSON as etcd's gateway reads it: Go's encoding/json Decoder takes one value
 * from the front of the body (whatever follows is left unread), and its
 * syntax errors are the messages clients see in a 400. This parser keeps
 * what JSON.parse loses: number literals as written (int64 must stay exact),
 * the raw text of strings (Go re-reads a quoted int64 from it), and it
 * reports errors in Go's words.
 */
export type JsonValue =
  /** Duplicate keys: the last one wins, as in Go's map. */
  | { readonly kind: 'object'; readonly fields: ReadonlyMap<string, JsonValue> }
  | { readonly kind: 'array'; readonly items: readonly JsonValue[] }
  /** `raw`: the source text between the quotes, escapes undecoded. */
  | { readonly kind: 'string'; readonly value: string; readonly raw: string }
  | { readonly kind: 'number'; readonly text: string }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'null' };

export type ScanResult =
  /** `end`: index just past the value. */
  | { readonly kind: 'value'; readonly value: JsonValue; readonly end: number }
  /** Nothing but whitespace: Go's io.EOF (an empty request). */
  | { readonly kind: 'empty' }
  /** The text ends inside a value: more input may complete it, else Go says "unexpected EOF". */
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'error'; readonly message: string };

export const UNEXPECTED_EOF = 'unexpected EOF';

class Incomplete {}
class SyntaxFault {
  constructor(readonly message: string) {}
}

const WHITESPACE = new Set([' ', '\t', '\r', '\n']);
/** Go's encoding/json refuses objects and arrays nested deeper than this. */
const MAX_NESTING_DEPTH = 10_000;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * Reads the first JSON value of `text` from `start`. `final`: no more input
 * will come, so a number running to the end is complete.
 */
export function scanValue(text: string, start = 0, final = true): ScanResult {
  const parser = new Parser(text, final);
  parser.pos = start;
  parser.skipWhitespace();
  if (parser.pos >= text.length) return { kind: 'empty' };
  try {
    const value = parser.value();
    return { kind: 'value', value, end: parser.pos };
  } catch (error) {
    if (error instanceof Incomplete) return { kind: 'incomplete' };
    if (error instanceof SyntaxFault) return { kind: 'error', message: error.message };
    throw error;
  }
}

/**
 * Go's json.Unmarshal of a whole document: one value and nothing after it
 * but whitespace. Used where Go re-reads a quoted number.
 */
export function parseDocument(text: string): { value: JsonValue } | { error: string } {
  const result = scanValue(text, 0, true);
  if (result.kind === 'empty' || result.kind === 'incomplete') return { error: 'unexpected end of JSON input' };
  if (result.kind === 'error') return { error: result.message };
  for (let i = result.end; i < text.length; i++) {
    const c = text.charAt(i);
    if (!WHITESPACE.has(c)) return { error: `invalid character ${quoteChar(c)} after top-level value` };
  }
  return { value: result.value };
}

/** An object or array being read; `key`: the object key whose value comes next. Duplicate keys: the last wins, as in Go's map. */
type Container = { readonly kind: 'array'; readonly items: JsonValue[] } | { readonly kind: 'object'; readonly fields: Map<string, JsonValue>; key: string };

class Parser {
  pos = 0;
  constructor(
    private readonly text: string,
    private readonly final: boolean,
  ) {}

  skipWhitespace(): void {
    while (this.pos < this.text.length && WHITESPACE.has(this.text.charAt(this.pos))) this.pos++;
  }

  /** The next character, or Incomplete at the end of the text. */
  private peek(): string {
    if (this.pos >= this.text.length) throw new Incomplete();
    return this.text.charAt(this.pos);
  }

  /**
   * One value, objects and arrays included. Iterative, with the open
   * containers on an explicit stack: a body nested ten thousand deep (Go's
   * limit) would overflow the JavaScript stack if this recursed.
   */
  value(): JsonValue {
    const open: Container[] = [];
    for (;;) {
      let done = this.openOrScalar(open);
      if (done === null) continue; // a container was opened: read its first element
      // Hand the finished value to its container, and close every container the text closes here.
      for (;;) {
        const top = open[open.length - 1];
        if (top === undefined) return done;
        if (top.kind === 'array') top.items.push(done);
        else {
          top.fields.delete(top.key);
          top.fields.set(top.key, done);
        }
        this.skipWhitespace();
        const next = this.peek();
        const closer = top.kind === 'array' ? ']' : '}';
        if (next === ',') {
          this.pos++;
          this.skipWhitespace();
          if (top.kind === 'object') top.key = this.objectKey();
          break;
        }
        if (next !== closer) throw this.invalid(next, top.kind === 'array' ? 'after array element' : 'after object key:value pair');
        this.pos++;
        open.pop();
        done = top.kind === 'array' ? { kind: 'array', items: top.items } : { kind: 'object', fields: top.fields };
      }
    }
  }

  /** A scalar, an empty container, or null after opening a container (pushed on `open`). */
  private openOrScalar(open: Container[]): JsonValue | null {
    const c = this.peek();
    if (c === '{' || c === '[') {
      // Go's scanner counts the container before it looks inside, so even an empty one past the limit fails.
      if (open.length >= MAX_NESTING_DEPTH) throw this.invalid(c, 'exceeded max depth');
      this.pos++;
      this.skipWhitespace();
      if (c === '[') {
        if (this.peek() === ']') {
          this.pos++;
          return { kind: 'array', items: [] };
        }
        open.push({ kind: 'array', items: [] });
        return null;
      }
      if (this.peek() === '}') {
        this.pos++;
        return { kind: 'object', fields: new Map() };
      }
      open.push({ kind: 'object', fields: new Map(), key: this.objectKey() });
      return null;
    }
    if (c === '"') {
      const { value, raw } = this.string();
      return { kind: 'string', value, raw };
    }
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (c === 't') return this.literal('true', { kind: 'bool', value: true });
    if (c === 'f') return this.literal('false', { kind: 'bool', value: false });
    if (c === 'n') return this.literal('null', { kind: 'null' });
    throw this.invalid(c, 'looking for beginning of value');
  }

  /** An object's key and its colon, up to where its value starts. */
  private objectKey(): string {
    const c = this.peek();
    if (c !== '"') throw this.invalid(c, 'looking for beginning of object key string');
    const key = this.string().value;
    this.skipWhitespace();
    const colon = this.peek();
    if (colon !== ':') throw this.invalid(colon, 'after object key');
    this.pos++;
    this.skipWhitespace();
    return key;
  }

  private string(): { value: string; raw: string } {
    const open = ++this.pos; // past the quote
    let value = '';
    let run = this.pos; // start of the characters not yet copied into value
    for (;;) {
      const c = this.peek();
      if (c === '"') {
        value += this.text.slice(run, this.pos);
        const raw = this.text.slice(open, this.pos);
        this.pos++;
        return { value, raw };
      }
      if (c < ' ') throw this.invalid(c, 'in string literal');
      if (c !== '\\') {
        this.pos++;
        continue;
      }
      value += this.text.slice(run, this.pos);
      this.pos++;
      const escape = this.peek();
      if (escape !== 'u') {
        const decoded = ESCAPES[escape];
        if (decoded === undefined) throw this.invalid(escape, 'in string escape code');
        value += decoded;
        this.pos++;
      } else {
        this.pos++;
        value += this.unicodeEscape();
      }
      run = this.pos;
    }
  }

  /** After "\u": four hex digits, combined with a following low surrogate escape as Go does; a lone surrogate is U+FFFD. */
  private unicodeEscape(): string {
    const unit = this.hex4();
    if (unit < 0xd800 || unit > 0xdfff) return String.fromCharCode(unit);
    if (unit <= 0xdbff && this.text.startsWith('\\u', this.pos)) {
      const save = this.pos;
      this.pos += 2;
      const low = this.hex4();
      if (low >= 0xdc00 && low <= 0xdfff) return String.fromCharCode(unit, low);
      this.pos = save; // not a pair: the second escape is read on its own
    }
    return '\ufffd';
  }

  private hex4(): number {
    let unit = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.peek();
      const digit = parseInt(c, 16);
      if (Number.isNaN(digit)) throw this.invalid(c, 'in \\u hexadecimal character escape');
      unit = unit * 16 + digit;
      this.pos++;
    }
    return unit;
  }

  private number(): JsonValue {
    const start = this.pos;
    if (this.peek() === '-') {
      this.pos++;
      const c = this.peekNumber();
      if (c === null || c < '0' || c > '9') throw c === null ? new Incomplete() : this.invalid(c, 'in numeric literal');
    }
    if (this.peekNumber() === '0') this.pos++;
    else this.digits();
    if (this.peekNumber() === '.') {
      this.pos++;
      const c = this.peekNumber();
      if (c === null || c < '0' || c > '9') throw c === null ? new Incomplete() : this.invalid(c, 'after decimal point in numeric literal');
      this.digits();
    }
    const e = this.peekNumber();
    if (e === 'e' || e === 'E') {
      this.pos++;
      const sign = this.peekNumber();
      if (sign === '+' || sign === '-') this.pos++;
      const c = this.peekNumber();
      if (c === null || c < '0' || c > '9') throw c === null ? new Incomplete() : this.invalid(c, 'in exponent of numeric literal');
      this.digits();
    }
    // A number is over only when something follows it, or the input is final.
    if (this.pos >= this.text.length && !this.final) throw new Incomplete();
    return { kind: 'number', text: this.text.slice(start, this.pos) };
  }

  /** The next character of a number, or null at the end of a final text. */
  private peekNumber(): string | null {
    if (this.pos < this.text.length) return this.text.charAt(this.pos);
    if (this.final) return null;
    throw new Incomplete();
  }

  private digits(): void {
    for (let c = this.peekNumber(); c !== null && c >= '0' && c <= '9'; c = this.peekNumber()) this.pos++;
  }

  private literal(word: string, value: JsonValue): JsonValue {
    for (let i = 0; i < word.length; i++) {
      const c = this.peek();
      if (c !== word[i]) throw this.invalid(c, `in literal ${word} (expecting ${quoteChar(word.charAt(i))})`);
      this.pos++;
    }
    return value;
  }

  private invalid(c: string, context: string): SyntaxFault {
    return new SyntaxFault(`invalid character ${quoteChar(c)} ${context}`);
  }
}

/**
 * Go's quoteChar: the offending byte in single quotes, escaped as
 * strconv.Quote would. Go sees bytes; for a character outside ASCII that is
 * the first byte of its UTF-8 encoding, read as a Latin-1 rune.
 */
export function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return `'"'`;
  const byte = (c.codePointAt(0) ?? 0) < 0x80 ? (c.codePointAt(0) ?? 0) : (Buffer.from(c, 'utf8')[0] ?? 0);
  return `'${goQuoteRune(byte)}'`;
}

const GO_SHORT_ESCAPES: Record<number, string> = { 7: '\\a', 8: '\\b', 12: '\\f', 10: '\\n', 13: '\\r', 9: '\\t', 11: '\\v', 92: '\\\\' };

function goQuoteRune(rune: number): string {
  const short = GO_SHORT_ESCAPES[rune];
  if (short !== undefined) return short;
  if (rune < 0x20 || rune === 0x7f) return `\\x${rune.toString(16).padStart(2, '0')}`;
  // U+0080..U+00A0 are not printable for strconv; the rest of Latin-1 is.
  if (rune >= 0x80 && rune <= 0xa0) return `\\u${rune.toString(16).padStart(4, '0')}`;
  if (rune === 0xad) return '\\u00ad';
  return String.fromCharCode(rune);
}
