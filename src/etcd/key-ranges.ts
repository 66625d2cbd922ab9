/** A key range [start, end) in etcd's byte order; end null means "to the end of the keyspace". */
export interface KeyRange {
  readonly start: Buffer;
  readonly end: Buffer | null;
}

/** etcd's spelling of "no upper bound" in a range_end, and of "from the first key" in a key. */
const ZERO_BYTE = Buffer.from([0]);

/** The end of the range holding every key that starts with prefix: null when the prefix is all 0xff. */
export function prefixEnd(prefix: Buffer): Buffer | null {
  for (let i = prefix.length - 1; i >= 0; i -= 1) {
    const byte = prefix[i] ?? 0xff;
    if (byte < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = byte + 1;
      return end;
    }
  }
  return null;
}

const before = (a: Buffer | null, b: Buffer | null): boolean => a !== null && (b === null || Buffer.compare(a, b) < 0);

/** Sorts and joins overlapping or touching ranges, so a request spanning two configured prefixes is still covered. */
function merge(ranges: readonly KeyRange[]): KeyRange[] {
  const sorted = [...ranges].sort((a, b) => Buffer.compare(a.start, b.start));
  const merged: KeyRange[] = [];
  for (const range of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && !before(last.end, range.start)) {
      merged[merged.length - 1] = { start: last.start, end: before(last.end, range.end) ? range.end : last.end };
    } else {
      merged.push(range);
    }
  }
  return merged;
}

/**
 * A set of key ranges with etcd's reading of a request's (key, range_end):
 * the whole keyspace, or the ranges of some prefixes. The mirror's scope is
 * one (which requests it can serve, what it lists and watches), a grayscale
 * prefix list another.
 */
export class KeyRanges {
  readonly whole: boolean;

  private constructor(readonly ranges: readonly KeyRange[]) {
    this.whole = ranges.length === 1 && ranges[0]?.start.length === 0 && ranges[0].end === null;
  }

  /** No prefixes, or an empty one, means the whole keyspace. */
  static fromPrefixes(prefixes: readonly Buffer[]): KeyRanges {
    if (prefixes.length === 0 || prefixes.some((p) => p.length === 0)) return new KeyRanges([{ start: Buffer.alloc(0), end: null }]);
    return new KeyRanges(merge(prefixes.map((start) => ({ start, end: prefixEnd(start) }))));
  }

  /** Exactly these ranges (joined where they touch); none, or one holding every key, is the whole keyspace. */
  static fromRanges(ranges: readonly KeyRange[]): KeyRanges {
    // etcd has no empty key: from "\0" on, without an end, is every key there is.
    const everything = (r: KeyRange): boolean => r.end === null && (r.start.length === 0 || r.start.equals(ZERO_BYTE));
    if (ranges.length === 0 || ranges.some(everything)) return new KeyRanges([{ start: Buffer.alloc(0), end: null }]);
    return new KeyRanges(merge(ranges));
  }

  /** The ranges describe() named; null when the text is not such a description. */
  static parse(description: string): KeyRanges | null {
    if (description === 'all') return KeyRanges.fromPrefixes([]);
    const ranges: KeyRange[] = [];
    for (const part of description.split(',')) {
      const match = /^([0-9a-f]*)-([0-9a-f]*)$/.exec(part);
      if (match === null || match[1] === undefined || match[2] === undefined) return null;
      ranges.push({ start: Buffer.from(match[1], 'hex'), end: match[2] === '' ? null : Buffer.from(match[2], 'hex') });
    }
    return ranges.length === 0 ? null : KeyRanges.fromRanges(ranges);
  }

  /** True when every range of `other` lies within one of these. */
  includes(other: KeyRanges): boolean {
    return other.ranges.every((range) => this.ranges.some((r) => Buffer.compare(range.start, r.start) >= 0 && !before(r.end, range.end)));
  }

  /** True when the key is mirrored. */
  contains(key: Buffer): boolean {
    return this.ranges.some((r) => Buffer.compare(key, r.start) >= 0 && before(key, r.end));
  }

  /**
   * True when every key a request's (key, range_end) can name is mirrored,
   * with etcd's meaning of range_end: empty for the one key, "\0" for every
   * key from key on, otherwise [key, range_end).
   */
  coversRequest(key: Buffer, rangeEnd: Buffer): boolean {
    if (this.whole) return true;
    if (rangeEnd.length === 0) return this.contains(key);
    const end = rangeEnd.equals(ZERO_BYTE) ? null : rangeEnd;
    // An empty or inverted range names no key; etcd answers it with nothing.
    if (end !== null && Buffer.compare(end, key) <= 0) return true;
    return this.ranges.some((r) => Buffer.compare(key, r.start) >= 0 && (r.end === null || (end !== null && Buffer.compare(end, r.end) <= 0)));
  }

  /** True when a request's (key, range_end), with etcd's meaning of range_end, may name a key in these ranges. */
  touches(key: Buffer, rangeEnd: Buffer): boolean {
    if (rangeEnd.length === 0) return this.contains(key);
    const end = rangeEnd.equals(ZERO_BYTE) ? null : rangeEnd;
    return this.ranges.some((r) => before(key, r.end) && before(r.start, end));
  }

  /** True when a request's (key, range_end) names at least one key the mirror watches (its watch range, gaps included). */
  touchesWatch(key: Buffer, rangeEnd: Buffer): boolean {
    if (this.whole) return true;
    const watch = this.watchRange();
    const end = rangeEnd.length === 0 ? Buffer.concat([key, ZERO_BYTE]) : rangeEnd.equals(ZERO_BYTE) ? null : rangeEnd;
    // [key, end) and [watch.start, watch.end) overlap.
    return before(key, watch.end) && before(watch.start, end);
  }

  /**
   * The one range the upstream watch covers: from the first range's start to
   * the last one's end. Events between prefixes arrive too and are dropped,
   * so every revision in it is seen (see Mirror).
   */
  watchRange(): KeyRange {
    const first = this.ranges[0];
    const last = this.ranges[this.ranges.length - 1];
    if (first === undefined || last === undefined) throw new Error('KeyRanges: no range');
    return { start: first.start, end: last.end };
  }

  /**
   * A key inside the mirrored ranges, for the proxy's own probes (read
   * barrier, compaction check): with auth on, the mirror's user may read it.
   */
  probeKey(): Buffer {
    const first = this.ranges[0];
    return first === undefined ? ZERO_BYTE : KeyRanges.toRequest(first).key;
  }

  /** A range as etcd's (key, range_end) request fields. */
  static toRequest(range: KeyRange): { key: Buffer; range_end: Buffer } {
    return { key: range.start.length === 0 ? ZERO_BYTE : range.start, range_end: range.end ?? ZERO_BYTE };
  }

  /** Stable text naming the ranges, stored with the mirror so a changed configuration is noticed at start. */
  describe(): string {
    if (this.whole) return 'all';
    return this.ranges.map((r) => `${r.start.toString('hex')}-${r.end?.toString('hex') ?? ''}`).join(',');
  }
}

/** A range as an operator reads it: its prefix when it is one ("/apisix/"), else [start, end). */
export function rangeName(range: KeyRange): string {
  const text = (bytes: Buffer): string => JSON.stringify(bytes.toString('utf8')).slice(1, -1);
  if (range.start.length === 0 && range.end === null) return 'the whole keyspace';
  const asPrefix = prefixEnd(range.start);
  if (range.end === null ? asPrefix === null : asPrefix !== null && asPrefix.equals(range.end)) return `${text(range.start)}*`;
  return `[${text(range.start)}, ${range.end === null ? 'end' : text(range.end)})`;
}
