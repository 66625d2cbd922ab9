import { open, type Database, type RootDatabase } from 'lmdb';
import { PRIVATE_FILE_MODE } from '../files/private-dir';
import type { KvSlot, PersistedMeta } from './meta';
import type { PersistedAuthState, PersistedMembers } from './saved-upstream';

/** The LMDB environment and its tables. A table lmdb hands back as undefined is one a read-only open of an older store does not have. */
export interface StoreTables {
  readonly root: RootDatabase;
  /** One entry, 'meta': the PersistedMeta of the last commit. */
  readonly meta: Database<PersistedMeta, string>;
  readonly members: Database<PersistedMembers, string>;
  /** Kept apart from the content: a wipe (another cluster, a restore) must not forget that auth was on. */
  readonly auth: Database<PersistedAuthState, string> | undefined;
  /** Values are etcd's encodings as they are: a key's KeyValue (key-codec.ts names the keys). */
  readonly kv: Readonly<Record<KvSlot, Database<Buffer, Buffer>>>;
  /** A revision's events (log-entry.ts), by revision. */
  readonly log: Database<Buffer, number>;
  /** Each key's newest version this machine does not show (grayscale/): what etcd holds, for checks and reloads. */
  readonly withheld: Database<Buffer, Buffer> | undefined;
  /** Kept apart from the meta: a wipe or a list keeps deriving under the same settings. */
  readonly grayscale: Database<string, string> | undefined;
  /** Bytes per LMDB page, fixed when the environment was created. */
  readonly pageSize: number;
  /** The last page the newest commit uses: where LMDB's next pages go. */
  lastPageNumber(): number;
}

/**
 * lmdb-js's native environment, which each of its database objects holds as
 * `env`. Its info() is mdb_env_info, one read of the newest meta page; the
 * documented getStats() also renews a read transaction and gathers three
 * more sets of figures, which the mirror paid on every commit (space-reserve.ts).
 */
interface NativeEnvironment {
  info(): { lastPageNumber: number };
}

function nativeEnvironmentOf(root: RootDatabase): NativeEnvironment {
  const env = (root as unknown as { env?: Partial<NativeEnvironment> }).env;
  const info = env?.info;
  if (env === undefined || typeof info !== 'function') throw new Error("etcd-cache-proxy: lmdb-js no longer exposes its environment's info(); src/store/store-tables.ts needs another way");
  return { info: () => info.call(env) };
}

/**
 * Opens the environment in `path`. overlappingSync: a commit is in the memory
 * map (a crash of the process loses nothing committed) and flushed to disk in
 * the background; an OS crash rolls back to the last flushed transaction,
 * which LMDB keeps intact, and the mirror resumes from there.
 */
export function openStoreTables(path: string, readOnly: boolean): StoreTables {
  // lmdb-js hands permissionsMode to mdb_env_open, the mode of data.mdb and lock.mdb when they are created (its default is 0664);
  // its option types do not list it, hence the object apart.
  const lmdbOptions = { path, overlappingSync: true, maxDbs: 16, readOnly, permissionsMode: PRIVATE_FILE_MODE };
  const root: RootDatabase = open(lmdbOptions);
  const native = nativeEnvironmentOf(root);
  return {
    root,
    pageSize: (root.getStats() as { pageSize: number }).pageSize,
    lastPageNumber: () => native.info().lastPageNumber,
    meta: root.openDB<PersistedMeta, string>({ name: 'meta', encoding: 'msgpack' }),
    members: root.openDB<PersistedMembers, string>({ name: 'members', encoding: 'msgpack' }),
    auth: root.openDB<PersistedAuthState, string>({ name: 'upstream-auth', encoding: 'msgpack' }) as Database<PersistedAuthState, string> | undefined,
    kv: {
      'kv-a': root.openDB<Buffer, Buffer>({ name: 'kv-a', keyEncoding: 'binary', encoding: 'binary' }),
      'kv-b': root.openDB<Buffer, Buffer>({ name: 'kv-b', keyEncoding: 'binary', encoding: 'binary' }),
    },
    log: root.openDB<Buffer, number>({ name: 'log', keyEncoding: 'ordered-binary', encoding: 'binary' }),
    withheld: root.openDB<Buffer, Buffer>({ name: 'withheld', keyEncoding: 'binary', encoding: 'binary' }) as Database<Buffer, Buffer> | undefined,
    grayscale: root.openDB<string, string>({ name: 'grayscale', encoding: 'string' }) as Database<string, string> | undefined,
  };
}
