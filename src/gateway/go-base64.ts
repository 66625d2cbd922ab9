/**
 * Standard base64 with padding, read the way Go's encoding/base64
 * StdEncoding reads it (what etcd's gateway uses for bytes fields): CR and LF
 * are skipped, anything else outside the alphabet is an error naming the
 * byte offset Go names ("illegal base64 data at input byte N"). Node's own
 * decoder silently skips bad characters instead.
 */
export type Base64Result = { readonly bytes: Buffer } | { readonly error: string };

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DECODE = new Int16Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d; // '='
const CR = 0x0d;
const LF = 0x0a;

export function decodeGoBase64(text: string): Base64Result {
  const src = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(Math.floor(src.length / 4) * 3 + 3);
  let written = 0;
  let si = 0;
  const corrupt = (offset: number): Base64Result => ({ error: `illegal base64 data at input byte ${offset}` });
  const skipNewlines = (): void => {
    while (si < src.length && (src[si] === CR || src[si] === LF)) si++;
  };

  while (si < src.length) {
    // One quantum: up to four alphabet characters, as Go's decodeQuantum reads them.
    const quantum: number[] = [];
    let padded = false;
    while (quantum.length < 4) {
      if (si === src.length) {
        if (quantum.length === 0) return { bytes: out.subarray(0, written) };
        // Padding is required: a short final quantum is corrupt where it started.
        return corrupt(si - quantum.length);
      }
      const byte = src[si] ?? 0;
      si++;
      const value = DECODE[byte] ?? -1;
      if (value >= 0) {
        quantum.push(value);
        continue;
      }
      if (byte === CR || byte === LF) continue;
      if (byte !== PAD) return corrupt(si - 1);
      // Padding: only after two or three characters, and "==" after two.
      if (quantum.length < 2) return corrupt(si - 1);
      if (quantum.length === 2) {
        skipNewlines();
        if (si === src.length) return corrupt(src.length);
        if (src[si] !== PAD) return corrupt(si - 1);
        si++;
      }
      skipNewlines();
      if (si < src.length) {
        writeQuantum(quantum);
        return corrupt(si);
      }
      padded = true;
      break;
    }
    writeQuantum(quantum);
    if (padded) break;
  }
  return { bytes: out.subarray(0, written) };

  function writeQuantum(quantum: readonly number[]): void {
    const [a = 0, b = 0, c = 0, d = 0] = quantum;
    const bits = (a << 18) | (b << 12) | (c << 6) | d;
    const bytes = quantum.length - 1;
    if (bytes >= 1) out[written++] = (bits >> 16) & 0xff;
    if (bytes >= 2) out[written++] = (bits >> 8) & 0xff;
    if (bytes >= 3) out[written++] = bits & 0xff;
  }
}
