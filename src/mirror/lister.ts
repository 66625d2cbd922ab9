import type { Client, Metadata } from '@grpc/grpc-js';
import type { MirrorStore } from '../store/store';
import { toIdentity, type WireHeader } from '../etcd/wire';
import type { MirroredRanges } from './mirrored-ranges';
import { rangePages } from './paged-range';

export interface ListResult {
  readonly revision: number;
  readonly keys: number;
}

/**
 * Lists every mirrored range in pages, all at the revision of the first page,
 * into a snapshot of the store, and commits it as the mirror's content at
 * that revision. Until the commit, readers keep seeing the previous content.
 */
export async function listInto(store: MirrorStore, client: Client, ranges: MirroredRanges, compactRevision: number, metadata?: () => Metadata): Promise<ListResult> {
  const writer = store.beginSnapshot();
  let revision = 0;
  let total = 0;
  let header: WireHeader | undefined;
  for (const range of ranges.ranges) {
    for await (const page of rangePages(client, range, revision, metadata)) {
      header ??= page.header;
      revision = page.revision;
      writer.putPage(page.records);
      total += page.records.length;
    }
  }
  writer.commit(revision, toIdentity(header), compactRevision, ranges.describe());
  return { revision, keys: total };
}
