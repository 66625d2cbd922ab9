import type { Client, Metadata } from '@grpc/grpc-js';
import type { MirrorStore } from '../store/store';
import { toIdentity, type WireHeader } from '../etcd/wire';
import type { MirroredRanges } from './mirrored-ranges';
import { rangePages } from './paged-range';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ListResult {
  readonly revision: number;
  readonly keys: number;
}

/**
 * Lists every mirrored range in pages, all at the revision of the first page,
 * into a snapshot of the store, and commits it as the mirror's content at
 * that revision. Until the commit, readers keep seeing the previous content.
 * With `bytesPerSecond`, each page is followed by the pause its bytes take at
 * that rate: a fleet listing again after a compaction must not read etcd's
 * whole keyspace all at once.
 */
export async function listInto(
  store: MirrorStore,
  client: Client,
  ranges: MirroredRanges,
  compactRevision: number,
  metadata?: () => Metadata,
  bytesPerSecond = 0,
): Promise<ListResult> {
  const writer = store.beginSnapshot();
  let revision = 0;
  let total = 0;
  let header: WireHeader | undefined;
  for (const [index, range] of ranges.ranges.entries()) {
    for await (const page of rangePages(client, 'mirror-list', range, revision, metadata)) {
      header ??= page.header;
      revision = page.revision;
      writer.putPage(page.records);
      total += page.records.length;
      // The pause keeps the next page back; after the very last one there is nothing to keep back.
      const last = page.end === range.end && index === ranges.ranges.length - 1;
      if (bytesPerSecond > 0 && !last) {
        const bytes = page.records.reduce((sum, record) => sum + record.bytes.length, 0);
        await sleep((bytes / bytesPerSecond) * 1000);
      }
    }
  }
  writer.commit(revision, toIdentity(header), compactRevision, ranges.describe());
  return { revision, keys: total };
}
