import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { isLongStoreKey, isPastEnd, scanStart, toStoreKey } from './key-codec';
import { orderedScan } from './ordered-scan';
import type { EncodedEvent } from '../etcd/event-bytes';
import { EncodedKeyValue } from '../etcd/kv-bytes';
import type { HeaderIdentity } from '../etcd/records';
import type { Logger } from '../log';
import { makePrivateDir, PRIVATE_FILE_MODE } from '../files/private-dir';
import { decodeLogEntry, encodeLogEntry } from './log-entry';
import { upgradeFromSchema1 } from './schema-upgrade';
import type { StoreMeta } from './meta';

/**
 * 2: keys and log entries are etcd's encodings (KeyValue, Event) under lmdb's
 * binary encoding; 1 kept them as msgpack'd objects.
 */
export const SCHEMA_VERSION = 2;

/** Two key tables: one serves reads while a re-list fills the other, then they swap in one commit. */
type KvSlot = 'kv-a' | 'kv-b';

interface PersistedMeta extends StoreMeta {
  readonly activeKv: KvSlot;
}

const EMPTY_META: PersistedMeta = {
  schemaVersion: SCHEMA_VERSION,
  identity: null,
  revision: 0,
  compactRevision: 0,
  logStart: 0,
  scope: '',
  activeKv: 'kv-a',
};

/** A key's newest version that this machine withholds (grayscale/), or none any more (null). */
export interface WithheldChange {
  readonly key: Buffer;
  readonly record: EncodedKeyValue | null;
}

/** Fills the inactive key table page by page; nothing is visible until commit. */
export interface SnapshotWriter {
  putPage(records: readonly EncodedKeyValue[]): void;
  /** Versions the list found that this machine withholds (grayscale/); they replace the old ones at commit. */
  putWithheld(records: readonly EncodedKeyValue[]): void;
  /** Makes the snapshot the mirror's content at `revision`, in one transaction. */
  commit(revision: number, identity: HeaderIdentity, compactRevision: number, scope: string): void;
}

/** Everything the store holds at one moment: meta and every key, from one read transaction. */
export interface StoreView {
  readonly meta: StoreMeta;
  readonly records: IterableIterator<EncodedKeyValue>;
  /** Ends the read transaction (a long-lived one keeps LMDB from reusing pages). */
  done(): void;
}

/** The last good upstream member list, and which discovery settings learned it. */
export interface PersistedMembers {
  /** The discovery settings it was learned under; another setting ignores it. */
  readonly source: string;
  readonly clientUrls: readonly string[];
}

/** What etcd last said of its auth: kept so that a restart during an outage refuses what was refused before. */
export interface PersistedAuthState {
  /** Auth was on upstream. */
  readonly enabled: boolean;
  /** etcd's auth revision when last told (AuthStatus, etcd 3.5+); 0 when not known. */
  readonly authRevision: number;
}

export interface StoreStats {
  readonly keys: number;
  readonly logRevisions: number;
  readonly bytes: number;
}

export interface MirrorStore {
  meta(): StoreMeta;
  /**
   * Reads the meta again from the latest commit (a store open read-only in
   * another process than its writer's: workers/), and returns it.
   */
  refresh(): StoreMeta;
  get(key: Buffer): EncodedKeyValue | undefined;
  /** Keys with start <= key < end (end null: no bound), in etcd's byte order. */
  scan(start: Buffer, end: Buffer | null): IterableIterator<EncodedKeyValue>;
  /** How many keys scan(start, end) would yield, reading keys only where it can. */
  count(start: Buffer, end: Buffer | null): number;
  /**
   * Applies one upstream watch response: every event, the log entries, and
   * the new mirror revision (the highest of the events' and `through`, which
   * the watch vouches for without mirrored events), in one LMDB transaction.
   * Returns the new M.
   */
  applyEvents(events: readonly EncodedEvent[], identity: HeaderIdentity, through?: number, withheld?: readonly WithheldChange[]): number;
  /** The newest version of a key that this machine withholds (grayscale/), if any. */
  withheld(key: Buffer): EncodedKeyValue | undefined;
  /** Every withheld version, in key order. */
  allWithheld(): IterableIterator<EncodedKeyValue>;
  withheldCount(): number;
  /**
   * Replaces the visible versions and withheld ones of some keys at the
   * current revision (grayscale settings changed): the log starts afresh, as
   * after a list, since its events were of the old view.
   */
  rederive(visible: readonly { key: Buffer; record: EncodedKeyValue | null }[], withheld: readonly WithheldChange[], settings: string): void;
  /** The grayscale settings (grayscale/describeSettings) the stored view was derived under; '' for none. */
  grayscaleSettings(): string;
  /** Records what the upstream said about itself (term changes, compaction) without events. */
  updateMeta(update: { identity?: HeaderIdentity; compactRevision?: number }): void;
  beginSnapshot(): SnapshotWriter;
  /** Events of revisions > after, in order, from the log. */
  eventsAfter(after: number): IterableIterator<{ revision: number; events: EncodedEvent[] }>;
  /** Drops log entries of revisions below keepFrom. */
  pruneLog(keepFrom: number): Promise<void>;
  /** Forgets everything (another cluster, or a restored one). */
  wipe(): void;
  /** Current keys, log entries (revisions) and bytes the environment uses. */
  stats(): StoreStats;
  /** A consistent view of the whole store, for snapshots: meta and keys as of one commit. */
  view(): StoreView;
  /** The member list saved last, for a restart while the upstream is unreachable. */
  members(): PersistedMembers | null;
  saveMembers(members: PersistedMembers): void;
  /** What etcd last said of its auth, or null when it never said (a store of an older version). */
  authState(): PersistedAuthState | null;
  saveAuthState(state: PersistedAuthState): void;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** Opened by a process that must not write (a snapshot of another process's mirror). */
  readonly readOnly?: boolean;
  /** Told, once, when the store on disk was converted from an older schema or its files' modes were tightened. */
  readonly log?: Logger;
}

/**
 * The LMDB environment in `<dataDir>/mirror`. overlappingSync: a commit is in
 * the memory map (a crash of the process loses nothing committed) and flushed
 * to disk in the background; an OS crash rolls back to the last flushed
 * transaction, which LMDB keeps intact, and the mirror resumes from there.
 * A store of schema 1 is converted in place before anything reads it.
 * Opened to write, the data dir and everything in it are the proxy user's
 * alone: 0700 directories, 0600 files (LMDB's data.mdb and lock.mdb are
 * created so), also where a data dir existed with looser modes.
 */
export function openStore(dataDir: string, options: StoreOptions = {}): MirrorStore {
  const path = join(dataDir, 'mirror');
  // Read-only (a snapshot of another process's mirror): the environment must already exist.
  if (options.readOnly === true) {
    if (!existsSync(join(path, 'data.mdb'))) throw new Error(`etcd-cache-proxy: no mirror in ${dataDir} (expected ${join(path, 'data.mdb')})`);
  } else {
    const { tightened, truncated, shared } = makePrivateDir(dataDir);
    if (shared) options.log?.warn({ dataDir }, 'data dir is a shared directory (sticky bit): its modes are left as they are; give the proxy a directory of its own');
    makePrivateDir(path);
    if (tightened.length > 0) {
      options.log?.warn({ dataDir, tightened: tightened.slice(0, 10), count: tightened.length, truncated }, 'data dir was open to other users; its directories are now 0700 and its files 0600');
    }
  }
  // lmdb-js hands permissionsMode to mdb_env_open, the mode of data.mdb and lock.mdb when they are created (its default is 0664).
  const lmdbOptions = { path, overlappingSync: true, maxDbs: 16, readOnly: options.readOnly === true, permissionsMode: PRIVATE_FILE_MODE };
  const root: RootDatabase = open(lmdbOptions);
  const metaDb = root.openDB<PersistedMeta, string>({ name: 'meta', encoding: 'msgpack' });
  const membersDb = root.openDB<PersistedMembers, string>({ name: 'members', encoding: 'msgpack' });
  // Kept apart from the content: a wipe (another cluster, a restore) must not forget that auth was on.
  // A read-only open of a store written before this table existed finds none.
  const authDb = root.openDB<PersistedAuthState, string>({ name: 'upstream-auth', encoding: 'msgpack' }) as Database<PersistedAuthState, string> | undefined;
  // Values are etcd's encodings as they are: a key's KeyValue, a revision's events (log-entry.ts).
  const kvDbs: Record<KvSlot, Database<Buffer, Buffer>> = {
    'kv-a': root.openDB<Buffer, Buffer>({ name: 'kv-a', keyEncoding: 'binary', encoding: 'binary' }),
    'kv-b': root.openDB<Buffer, Buffer>({ name: 'kv-b', keyEncoding: 'binary', encoding: 'binary' }),
  };
  const logDb = root.openDB<Buffer, number>({ name: 'log', keyEncoding: 'ordered-binary', encoding: 'binary' });
  // Each key's newest version this machine does not show (grayscale/): what etcd holds, for checks and reloads.
  // A read-only open of a store written before these tables existed finds none (lmdb hands back undefined).
  const withheldDb = root.openDB<Buffer, Buffer>({ name: 'withheld', keyEncoding: 'binary', encoding: 'binary' }) as Database<Buffer, Buffer> | undefined;
  // Kept apart from the meta: a wipe or a list keeps deriving under the same settings.
  const grayscaleDb = root.openDB<string, string>({ name: 'grayscale', encoding: 'string' }) as Database<string, string> | undefined;
  const applyWithheld = (changes: readonly WithheldChange[]): void => {
    if (withheldDb === undefined) throw new Error('etcd-cache-proxy: the store is open read-only');
    for (const change of changes) {
      if (change.record === null) withheldDb.removeSync(toStoreKey(change.key));
      else withheldDb.putSync(toStoreKey(change.key), change.record.bytes);
    }
  };

  /** Schema 1 to 2 in one write transaction: a crash midway leaves schema 1 as it was, converted again at the next open. */
  const upgrade = (old: PersistedMeta): PersistedMeta => {
    if (options.readOnly === true) {
      throw new Error(`etcd-cache-proxy: ${path} has store schema 1; start the proxy on it once to convert it to schema ${SCHEMA_VERSION}`);
    }
    const started = Date.now();
    const next: PersistedMeta = { ...old, schemaVersion: SCHEMA_VERSION };
    const inactive: KvSlot = old.activeKv === 'kv-a' ? 'kv-b' : 'kv-a';
    const converted = root.transactionSync(() => {
      const result = upgradeFromSchema1(root, { activeKv: kvDbs[old.activeKv], inactiveKv: kvDbs[inactive], log: logDb }, old.activeKv);
      metaDb.putSync('meta', next);
      return result;
    });
    options.log?.info({ from: 1, to: SCHEMA_VERSION, ...converted, ms: Date.now() - started }, 'store converted in place to etcd encodings; the mirror is kept');
    return next;
  };
  let stored: PersistedMeta | undefined;
  try {
    const found = metaDb.get('meta');
    stored = found?.schemaVersion === 1 ? upgrade(found) : found;
    if (stored !== undefined && stored.schemaVersion !== SCHEMA_VERSION) {
      throw new Error(`etcd-cache-proxy: ${path} has store schema ${stored.schemaVersion}, this version reads ${SCHEMA_VERSION}`);
    }
  } catch (error) {
    // Nobody gets a handle to close: the environment is closed here (an open one would block the next open in this process).
    void root.close();
    throw error;
  }
  // Stores written before prefixes could be chosen hold the whole keyspace.
  let meta: PersistedMeta = stored === undefined ? EMPTY_META : { ...stored, scope: stored.scope ?? 'all' };
  const writeMeta = (next: PersistedMeta): void => {
    metaDb.putSync('meta', next);
  };
  const active = (): Database<Buffer, Buffer> => kvDbs[meta.activeKv];
  /** LMDB's entries with their values as views (lmdb hands out copies of binary values, which the views may keep). */
  const viewsOf = (entries: Iterable<{ key: Buffer; value: Buffer }>): Iterable<{ key: Buffer; value: EncodedKeyValue }> => ({
    *[Symbol.iterator]() {
      for (const { key, value } of entries) yield { key, value: new EncodedKeyValue(value) };
    },
  });

  return {
    meta: () => meta,
    refresh() {
      root.resetReadTxn();
      const found = metaDb.get('meta');
      meta = found === undefined ? EMPTY_META : { ...found, scope: found.scope ?? 'all' };
      return meta;
    },
    get(key) {
      const bytes = active().get(toStoreKey(key));
      const record = bytes === undefined ? undefined : new EncodedKeyValue(bytes);
      return record !== undefined && record.key.equals(key) ? record : undefined;
    },
    scan(start, end) {
      return orderedScan(viewsOf(active().getRange({ start: scanStart(start) })), start, end);
    },
    count(start, end) {
      const table = active();
      let total = 0;
      for (const storeKey of table.getKeys({ start: scanStart(start) })) {
        if (end !== null && isPastEnd(storeKey, end)) break;
        // An inline key is its own full key; a long one must be read to be placed exactly.
        const stored = isLongStoreKey(storeKey) ? table.get(storeKey) : undefined;
        const key = stored === undefined ? storeKey : new EncodedKeyValue(stored).key;
        if (Buffer.compare(key, start) >= 0 && (end === null || Buffer.compare(key, end) < 0)) total += 1;
      }
      return total;
    },
    applyEvents(events, identity, through = 0, withheld = []) {
      if (events.length === 0 && withheld.length === 0 && through <= meta.revision) return meta.revision;
      meta = root.transactionSync(() => {
        const kv = active();
        const byRevision = new Map<number, EncodedEvent[]>();
        for (const event of events) {
          const revision = event.kv.mod_revision;
          if (revision <= meta.revision) continue; // already applied (a resumed watch may repeat the seam)
          if (event.type === 'PUT') kv.putSync(toStoreKey(event.kv.key), event.kv.bytes);
          else kv.removeSync(toStoreKey(event.kv.key));
          const group = byRevision.get(revision) ?? [];
          group.push(event);
          byRevision.set(revision, group);
        }
        for (const [revision, group] of byRevision) logDb.putSync(revision, encodeLogEntry(group));
        applyWithheld(withheld);
        const revision = Math.max(meta.revision, through, ...byRevision.keys());
        const logStart = meta.logStart === 0 && byRevision.size > 0 ? Math.min(...byRevision.keys()) : meta.logStart;
        const next = { ...meta, identity, revision, logStart };
        writeMeta(next);
        return next;
      });
      return meta.revision;
    },
    updateMeta(update) {
      const next = {
        ...meta,
        ...(update.identity === undefined ? {} : { identity: update.identity }),
        ...(update.compactRevision === undefined ? {} : { compactRevision: Math.max(meta.compactRevision, update.compactRevision) }),
      };
      writeMeta(next);
      meta = next;
    },
    beginSnapshot() {
      const slot: KvSlot = meta.activeKv === 'kv-a' ? 'kv-b' : 'kv-a';
      const target = kvDbs[slot];
      target.clearSync();
      const withheld: EncodedKeyValue[] = [];
      return {
        putPage(records) {
          root.transactionSync(() => {
            for (const record of records) target.putSync(toStoreKey(record.key), record.bytes);
          });
        },
        putWithheld(records) {
          withheld.push(...records);
        },
        commit(revision, identity, compactRevision, scope) {
          // The log, empty from here, holds every event after `revision`: the keyspace at `revision` itself stays answerable.
          const next: PersistedMeta = { ...meta, activeKv: slot, identity, revision, compactRevision, logStart: revision + 1, scope };
          root.transactionSync(() => {
            logDb.clearSync();
            withheldDb?.clearSync();
            applyWithheld(withheld.map((record) => ({ key: record.key, record })));
            writeMeta(next);
          });
          meta = next;
          // The old table is dead weight now; emptying it can wait for the next snapshot.
        },
      };
    },
    *eventsAfter(after) {
      for (const { key, value } of logDb.getRange({ start: after + 1 })) yield { revision: key, events: decodeLogEntry(value) };
    },
    async pruneLog(keepFrom) {
      if (keepFrom <= meta.logStart) return;
      await root.transaction(() => {
        for (const revision of logDb.getKeys({ end: keepFrom })) logDb.removeSync(revision);
        const next = { ...meta, logStart: keepFrom };
        writeMeta(next);
        meta = next;
      });
    },
    wipe() {
      root.transactionSync(() => {
        kvDbs['kv-a'].clearSync();
        kvDbs['kv-b'].clearSync();
        logDb.clearSync();
        withheldDb?.clearSync();
        writeMeta(EMPTY_META);
      });
      meta = EMPTY_META;
    },
    withheld(key) {
      const bytes = withheldDb?.get(toStoreKey(key));
      const record = bytes === undefined ? undefined : new EncodedKeyValue(bytes);
      return record !== undefined && record.key.equals(key) ? record : undefined;
    },
    allWithheld() {
      return orderedScan(viewsOf(withheldDb?.getRange({}) ?? []), Buffer.alloc(0), null);
    },
    withheldCount: () => (withheldDb === undefined ? 0 : (withheldDb.getStats() as { entryCount: number }).entryCount),
    grayscaleSettings: () => grayscaleDb?.get('settings') ?? '',
    rederive(visible, withheld, settings) {
      root.transactionSync(() => {
        if (grayscaleDb === undefined) throw new Error('etcd-cache-proxy: the store is open read-only');
        grayscaleDb.putSync('settings', settings);
        if (visible.length === 0 && withheld.length === 0) return;
        const kv = active();
        for (const { key, record } of visible) {
          if (record === null) kv.removeSync(toStoreKey(key));
          else kv.putSync(toStoreKey(key), record.bytes);
        }
        applyWithheld(withheld);
        logDb.clearSync();
        const next = { ...meta, logStart: meta.revision + 1 };
        writeMeta(next);
        meta = next;
      });
    },
    stats() {
      const env = root.getStats() as { pageSize: number; lastPageNumber: number };
      const entries = (db: { getStats(): unknown }): number => (db.getStats() as { entryCount: number }).entryCount;
      return { keys: entries(active()), logRevisions: entries(logDb), bytes: (env.lastPageNumber + 1) * env.pageSize };
    },
    view() {
      const transaction = root.useReadTransaction();
      const seen = metaDb.get('meta', { transaction }) ?? EMPTY_META;
      const table = kvDbs[seen.activeKv];
      const empty = Buffer.alloc(0);
      return {
        meta: seen,
        records: orderedScan(viewsOf(table.getRange({ transaction })), empty, null),
        done: () => transaction.done(),
      };
    },
    members: () => membersDb.get('members') ?? null,
    authState: () => authDb?.get('auth') ?? null,
    saveAuthState(state) {
      const held = authDb?.get('auth');
      if (held?.enabled !== state.enabled || held.authRevision !== state.authRevision) authDb?.putSync('auth', state);
    },
    saveMembers(members) {
      membersDb.putSync('members', members);
    },
    close: () => root.close(),
  };
}
