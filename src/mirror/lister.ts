import type { Client, Metadata } from '@grpc/grpc-js';
import type { MirrorStore } from '../store/store';
import { toIdentity, type WireHeader } from '../etcd/wire';
import type { KeyRanges } from '../etcd/key-ranges';
import { rangePages } from './paged-range';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GrayscaleView } from '../grayscale/view';

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
 * whole keyspace all at once. Under grayscale prefixes, what this machine
 * withholds is kept apart and the version it showed stays.
 */
export async function listInto(
  store: MirrorStore,
  client: Client,
  ranges: KeyRanges,
  compactRevision: number,
  metadata?: () => Metadata,
  bytesPerSecond = 0,
  grayscale: GrayscaleView | null = null,
): Promise<ListResult> {
  const writer = store.beginSnapshot();
  let revision = 0;
  let total = 0;
  let header: WireHeader | undefined;
  for (const [index, range] of ranges.ranges.entries()) {
    for await (const page of rangePages(client, 'mirror-list', range, revision, metadata)) {
      header ??= page.header;
      revision = page.revision;
      if (grayscale === null) writer.putPage(page.records);
      else {
        // Until the commit, the store's current content is what this machine showed before the list.
        const view = grayscale.viewListed(page.records, (key) => store.get(key));
        writer.putPage(view.visible);
        writer.putWithheld(view.withheld);
      }
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
