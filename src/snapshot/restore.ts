import { toRevision } from '../etcd/wire';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { openStore, type MirrorStore } from '../store/store';
import { SnapshotError, headerIdentityOf, openSnapshot, type SnapshotReader } from './format';

const PAGE_KEYS = 1_000;

export interface RestoredSnapshot {
  readonly revision: number;
  readonly keys: number;
}

/**
 * Replaces the mirror in an open store with a snapshot's keys. They go into
 * the store's inactive table and become the mirror in one commit only after
 * the whole snapshot checked out: a truncated or damaged one leaves the store
 * as it was, and readers (the proxy may be serving) never see half of it.
 */
export async function restoreInto(store: MirrorStore, reader: SnapshotReader, options: { extending?: boolean } = {}): Promise<RestoredSnapshot> {
  // The commit swaps the key tables and empties the log in one transaction: until then the old mirror is intact.
  const writer = store.beginSnapshot();
  const mirrored = options.extending === true ? store.meta().revision : 0;
  let page: EncodedKeyValue[] = [];
  let keys = 0;
  for await (const record of reader.records()) {
    if (record.mod_revision <= mirrored) refuseAnotherHistory(store, record, mirrored);
    page.push(record);
    keys += 1;
    if (page.length >= PAGE_KEYS) {
      writer.putPage(page);
      page = [];
    }
  }
  writer.putPage(page);
  const revision = toRevision(reader.header.revision);
  writer.commit(revision, headerIdentityOf(reader.header), toRevision(reader.header.compact_revision), reader.header.scope);
  return { revision, keys };
}

/**
 * A snapshot of the mirror's own history, at a revision past the mirror's M,
 * holds every key it has unchanged since a revision up to M exactly as the
 * mirror holds it at M. One that does not is of another history: etcd was
 * restored from a backup (with the same cluster ID) after it was published,
 * or before, and revisions mean other writes in the two. Refused, key named.
 */
function refuseAnotherHistory(store: MirrorStore, record: EncodedKeyValue, mirrored: number): void {
  const held = store.get(record.key);
  const same =
    held !== undefined &&
    held.mod_revision === record.mod_revision &&
    held.create_revision === record.create_revision &&
    held.version === record.version &&
    held.lease === record.lease &&
    held.value.equals(record.value);
  if (same) return;
  const key = JSON.stringify(record.key.toString('utf8').slice(0, 200));
  throw new SnapshotError('the snapshot', `of another history than the mirror (etcd restored from a backup?): it holds ${key} as written at revision ${record.mod_revision}, which the mirror at ${mirrored} holds ${held === undefined ? 'not at all' : `as written at ${held.mod_revision}, otherwise`}`);
}

/**
 * Seeds the mirror in `dataDir` from a snapshot file, so a proxy can serve
 * before it ever reached etcd. A data dir that already holds a mirror is
 * refused unless `force` (its content is replaced).
 */
export async function restoreSnapshot(file: string, dataDir: string, options: { force?: boolean } = {}): Promise<RestoredSnapshot> {
  const reader = await openSnapshot(file);
  const store = openStore(dataDir);
  try {
    const held = store.meta();
    if (held.revision > 0 && options.force !== true) {
      throw new Error(`etcd-cache-proxy: ${dataDir} already holds a mirror at revision ${held.revision}; restore into an empty data dir (or pass --force to replace it)`);
    }
    return await restoreInto(store, reader);
  } finally {
    await store.close();
  }
}
