import type { Client } from '@grpc/grpc-js';
import type { MirrorStore } from '../store/store';
import { callUpstream } from '../upstream/unary';
import { toIdentity, toKeyValueRecord, toRevision, type WireRangeResponse } from './codec';

/** Keys per Range page: big enough to list fast, small enough to stay far below etcd's response limits. */
export const LIST_PAGE_KEYS = 1_000;
const PAGE_TIMEOUT_MS = 30_000;

export interface ListResult {
  readonly revision: number;
  readonly keys: number;
}

/**
 * Lists [key, rangeEnd) in pages, all at the revision of the first page, into
 * a snapshot of the store, and commits it as the mirror's content at that
 * revision. Until the commit, readers keep seeing the previous content.
 */
export async function listInto(store: MirrorStore, client: Client, key: Buffer, rangeEnd: Buffer, compactRevision: number): Promise<ListResult> {
  const writer = store.beginSnapshot();
  let revision = 0;
  let next = key;
  let total = 0;
  let header: WireRangeResponse['header'];
  for (;;) {
    const page = await callUpstream<WireRangeResponse>(
      client,
      'etcdserverpb.KV',
      'Range',
      { key: next, range_end: rangeEnd, limit: String(LIST_PAGE_KEYS), revision: String(revision) },
      { deadlineMs: PAGE_TIMEOUT_MS },
    );
    header ??= page.header;
    if (revision === 0) revision = toRevision(page.header?.revision);
    const records = (page.kvs ?? []).map(toKeyValueRecord);
    writer.putPage(records);
    total += records.length;
    const last = records[records.length - 1];
    if (page.more !== true || last === undefined) break;
    // The next page starts right after the last key: the same key plus a zero byte.
    next = Buffer.concat([last.key, Buffer.from([0])]);
  }
  writer.commit(revision, toIdentity(header), compactRevision);
  return { revision, keys: total };
}
