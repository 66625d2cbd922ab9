import { createHash } from 'node:crypto';
import { Client, credentials } from '@grpc/grpc-js';
import { toIdentity, toRevision } from '../etcd/wire';
import { KeyRanges } from '../etcd/key-ranges';
import { rangePages } from '../mirror/paged-range';
import type { KeyValueFields } from '../etcd/records';
import { openStore, type MirrorStore } from '../store/store';
import type { UpstreamEndpoint } from '../etcd/endpoint';
import { writeAtomically } from '../files/atomic-file';
import { SNAPSHOT_FORMAT, SNAPSHOT_VERSION, headerLine, keyLine, trailerLine, type SnapshotHeader } from './format';

const EVERYTHING = KeyRanges.fromPrefixes([]);

export interface SavedSnapshot {
  readonly revision: number;
  readonly keys: number;
}

async function writeSnapshot(file: string, header: SnapshotHeader, records: AsyncIterable<KeyValueFields> | Iterable<KeyValueFields>): Promise<number> {
  let keys = 0;
  await writeAtomically(file, async (out) => {
    const hash = createHash('sha256');
    const emit = async (line: string): Promise<void> => {
      hash.update(line);
      await out.write(line);
    };
    await emit(headerLine(header));
    for await (const record of records) {
      await emit(keyLine(record));
      keys += 1;
    }
    await out.write(trailerLine(keys, hash));
  });
  return keys;
}

/**
 * The mirror as of one commit, read in one LMDB read transaction: safe while
 * the proxy that owns the data dir keeps writing to it (LMDB readers never
 * block the writer, nor see a half-applied commit).
 */
export async function saveFromStore(store: MirrorStore, file: string, source: string): Promise<SavedSnapshot> {
  const view = store.view();
  try {
    const { meta } = view;
    if (meta.revision === 0 || meta.identity === null) throw new Error(`etcd-cache-proxy: ${source} holds no mirror yet (never synced)`);
    const header: SnapshotHeader = {
      format: SNAPSHOT_FORMAT,
      version: SNAPSHOT_VERSION,
      revision: String(meta.revision),
      compact_revision: String(meta.compactRevision),
      ...meta.identity,
      scope: meta.scope,
      created_at: new Date().toISOString(),
      source,
    };
    const keys = await writeSnapshot(file, header, view.records);
    return { revision: meta.revision, keys };
  } finally {
    view.done();
  }
}

/** The whole keyspace of a live cluster, paged at one revision, from the first endpoint that answers. */
/** The mirror of a data dir (also while a proxy runs on it: the store is opened read-only). */
export async function saveFromDataDir(dataDir: string, file: string): Promise<SavedSnapshot> {
  const store = openStore(dataDir, { readOnly: true });
  try {
    return await saveFromStore(store, file, dataDir);
  } finally {
    await store.close();
  }
}

export async function saveFromCluster(endpoints: readonly UpstreamEndpoint[], file: string): Promise<SavedSnapshot> {
  const failures: string[] = [];
  for (const endpoint of endpoints) {
    const client = new Client(endpoint.target, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    try {
      const pages = rangePages(client, 'snapshot', EVERYTHING.watchRange(), 0);
      const first = await pages.next();
      if (first.done === true) throw new Error('no answer');
      const header: SnapshotHeader = {
        format: SNAPSHOT_FORMAT,
        version: SNAPSHOT_VERSION,
        revision: String(first.value.revision),
        compact_revision: '0',
        ...toIdentity(first.value.header),
        scope: EVERYTHING.describe(),
        created_at: new Date().toISOString(),
        source: endpoint.url,
      };
      async function* all(): AsyncGenerator<KeyValueFields> {
        if (first.done !== true) yield* first.value.records;
        for await (const page of pages) yield* page.records;
      }
      const keys = await writeSnapshot(file, header, all());
      return { revision: toRevision(header.revision), keys };
    } catch (error) {
      failures.push(`${endpoint.url}: ${(error as { details?: string }).details ?? (error instanceof Error ? error.message : String(error))}`);
    } finally {
      client.close();
    }
  }
  throw new Error(`etcd-cache-proxy: no endpoint answered (${failures.join('; ')})`);
}
