import { Metadata, type Client } from '@grpc/grpc-js';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { readRangeResponse } from '../etcd/response-bytes';
import type { UpstreamReason } from '../upstream/call-reason';
import { callUpstreamForBytes } from '../upstream/unary';
import { toRevision, type WireHeader } from '../etcd/wire';
import { KeyRanges, type KeyRange } from '../etcd/key-ranges';

/** Keys per Range page: big enough to list fast, small enough to stay far below etcd's response limits. */
export const LIST_PAGE_KEYS = 1_000;
const PAGE_TIMEOUT_MS = 30_000;

export interface RangePage {
  /** The keys as etcd encoded them, kept as they came. */
  readonly records: EncodedKeyValue[];
  readonly header: WireHeader | undefined;
  /** The revision the page was read at (the upstream's current one when 0 was asked for). */
  readonly revision: number;
  /** Where the keys this page accounts for end (exclusive): after its last key, or the range's end on the last page. */
  readonly end: Buffer | null;
}

/**
 * Reads a key range from the upstream in pages, every page at one revision:
 * the one given, or (0) the revision of the first page.
 */
export async function* rangePages(
  client: Client,
  reason: UpstreamReason,
  range: KeyRange,
  revision: number,
  metadata: () => Metadata = () => new Metadata(),
  pageKeys = LIST_PAGE_KEYS,
): AsyncGenerator<RangePage> {
  const request = KeyRanges.toRequest(range);
  let next = request.key;
  let at = revision;
  for (;;) {
    const answer = await callUpstreamForBytes(
      client,
      'etcdserverpb.KV',
      'Range',
      { key: next, range_end: request.range_end, limit: String(pageKeys), revision: String(at) },
      { deadlineMs: PAGE_TIMEOUT_MS, metadata: metadata(), reason },
    );
    const { response: page, kvs: records } = readRangeResponse(answer);
    if (at === 0) at = toRevision(page.header?.revision);
    const last = records[records.length - 1];
    const more = page.more === true && last !== undefined;
    // The next page starts right after the last key: the same key plus a zero byte.
    const end = more ? Buffer.concat([last.key, Buffer.from([0])]) : range.end;
    yield { records, header: page.header, revision: at, end };
    if (!more || end === null) return;
    next = end;
  }
}
