// Strings as Go's encoding/json writes them: jsonpb hands string fields to
// it, and grpc-gateway's error bodies are written with it too.
import { isUtf8 } from 'node:buffer';

const GO_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * A string as Go's encoding/json writes it: HTML-safe (<, >, & escaped),
 * U+2028/U+2029 escaped, other control characters as \u00XX.
 */
export function goJsonString(text: string): string {
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/["\\\u0000-\u001f<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `"${escaped}"`;
}

/**
 * The bytes of a protobuf string field as Go writes them. Valid UTF-8
 * (nearly always) is goJsonString of its text; otherwise each byte that
 * does not start a well-formed sequence becomes the six characters
 * \ufffd, as Go writes them (checked against etcd 3.4's gateway), where
 * decoding to a JavaScript string would give one raw U+FFFD for a whole bad
 * sequence.
 */
export function goJsonStringOfBytes(bytes: Buffer): string {
  if (isUtf8(bytes)) return goJsonString(bytes.toString('utf8'));
  let text = '"';
  let runStart = 0;
  let at = 0;
  while (at < bytes.length) {
    const size = validSequenceLength(bytes, at);
    if (size > 0) {
      at += size;
      continue;
    }
    if (runStart < at) text += goJsonString(bytes.toString('utf8', runStart, at)).slice(1, -1);
    text += '\\ufffd';
    at += 1;
    runStart = at;
  }
  if (runStart < at) text += goJsonString(bytes.toString('utf8', runStart, at)).slice(1, -1);
  return `${text}"`;
}

/** Length of the well-formed UTF-8 sequence at `at` (no overlongs, surrogates or code points past U+10FFFF), or 0. */
function validSequenceLength(bytes: Buffer, at: number): number {
  const first = bytes[at] ?? 0;
  if (first < 0x80) return 1;
  const continuation = (offset: number, low = 0x80, high = 0xbf): boolean => {
    const byte = bytes[at + offset];
    return byte !== undefined && byte >= low && byte <= high;
  };
  if (first >= 0xc2 && first <= 0xdf) return continuation(1) ? 2 : 0;
  if (first >= 0xe0 && first <= 0xef) {
    const low = first === 0xe0 ? 0xa0 : 0x80;
    const high = first === 0xed ? 0x9f : 0xbf;
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (first >= 0xf0 && first <= 0xf4) {
    const low = first === 0xf0 ? 0x90 : 0x80;
    const high = first === 0xf4 ? 0x8f : 0xbf;
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}
