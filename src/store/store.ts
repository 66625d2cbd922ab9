import { statfs } from 'node:fs/promises';
import type { EncodedEvent } from '../etcd/event-bytes';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import type { HeaderIdentity } from '../etcd/records';
import type { Logger } from '../log';
import { commitEvents, commitMetaUpdate } from './event-commit';
import { countRecords, getRecord, scanRecords } from './key-reads';
import { decodeLogEntry } from './log-entry';
import type { StoreMeta } from './meta';
import { prepareMirrorDir } from './mirror-dir';
import { saveAuthState, type PersistedAuthState, type PersistedMembers } from './saved-upstream';
import { beginSnapshot, type SnapshotWriter } from './snapshot-writer';
import { activeTable, type StoreState } from './store-state';
import { openStoreTables } from './store-tables';
import { pruneLog, storeStats, usedBytes, wipeStore, type StoreStats } from './store-upkeep';
import { viewStore, type StoreView } from './store-view';
import { metaInSnapshot, readStoredMeta, refreshMeta } from './stored-meta';
import { rederive } from './view-rederive';
import { allWithheld, withheldCount, type WithheldChange } from './withheld-table';
import { SpaceReserve } from './space-reserve';
import { WriteGuard, type WriteHold, type WriteNotice } from './write-hold';

export { SCHEMA_VERSION } from './meta';
export type { PersistedAuthState, PersistedMembers } from './saved-upstream';
export type { SnapshotWriter } from './snapshot-writer';
export type { StoreStats } from './store-upkeep';
export type { StoreView } from './store-view';
export type { WithheldChange } from './withheld-table';
export { isOutOfSpace, StoreFull, type WriteHold, type WriteNotice } from './write-hold';

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
  /**
   * The newest put the log holds, looking back at most `entries` revisions;
   * with nothing there (the mirror was just listed or took a snapshot), the
   * current key written last. Null for an empty mirror.
   */
  newestPut(entries: number): EncodedKeyValue | null;
  /** Drops log entries of revisions below keepFrom. */
  pruneLog(keepFrom: number): Promise<void>;
  /** Forgets everything (another cluster, or a restored one). */
  wipe(): void;
  /** Current keys, log entries (revisions) and bytes the environment uses. */
  stats(): StoreStats;
  /** A consistent view of the whole store, for snapshots: meta and keys as of one commit. */
  view(): StoreView;
  /**
   * Why writes are held back (a write failed for lack of room on the disk or
   * in LMDB's map), or null while the store writes. While held, every write
   * that changes the content throws StoreFull without touching LMDB; the
   * member list, the auth state and the meta's own updates are kept and
   * written on resume.
   */
  writeHold(): WriteHold | null;
  /** Resolves once the store writes again (at once when it does). */
  whenWritable(): Promise<void>;
  /** Room was found again: writes are made again, the kept ones first. */
  resumeWrites(): void;
  /** Told of every write that failed, and of writes resuming. */
  onWriteNotice(listener: (notice: WriteNotice) => void): void;
  /** Bytes free for the store on its file system (what an unprivileged process may still write). */
  freeBytes(): Promise<number>;
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
 * The mirror's LMDB environment in `<dataDir>/mirror` (mirror-dir.ts: made
 * the proxy user's alone when opened to write; store-tables.ts: its tables
 * and how commits reach the disk). A store of schema 1 is converted in place
 * before anything reads it (stored-meta.ts). Each method is the job of one
 * file here, on the state this handle holds (store-state.ts).
 */
export function openStore(dataDir: string, options: StoreOptions = {}): MirrorStore {
  const readOnly = options.readOnly === true;
  const path = prepareMirrorDir(dataDir, readOnly, options.log);
  const tables = openStoreTables(path, readOnly);
  const state: StoreState = { tables, meta: readStoredMeta(tables, path, readOnly, options.log) };
  const reserve = readOnly ? null : new SpaceReserve(path, () => usedBytes(tables));
  const guard = new WriteGuard(reserve);
  // A reader reads the meta in the snapshot it reads the keys in (another process commits). lmdb-js keeps one
  // read snapshot until a timer after the current job, so the meta read once is kept until this job ends
  // (a microtask, before any timer): a read asks meta() several times and decodes it once.
  let readerMeta: StoreMeta | null = null;
  const snapshotMeta = (): StoreMeta => {
    if (readerMeta === null) {
      readerMeta = metaInSnapshot(state);
      queueMicrotask(() => (readerMeta = null));
    }
    return readerMeta;
  };
  // A reader takes the slot of the keys from the snapshot it reads them in (a relist in the writer swaps slots).
  const active = readOnly
    ? (): ReturnType<typeof activeTable> => {
        snapshotMeta();
        return activeTable(state);
      }
    : (): ReturnType<typeof activeTable> => activeTable(state);
  return {
    // The writer's meta is its own last commit; a reader's is read with the keys (another process commits).
    meta: readOnly ? snapshotMeta : () => state.meta,
    refresh: () => {
      // A new snapshot: what was kept of the old one goes.
      readerMeta = null;
      return refreshMeta(state);
    },
    get: (key) => getRecord(active(), key),
    scan: (start, end) => scanRecords(active(), start, end),
    count: (start, end) => countRecords(active(), start, end),
    applyEvents: (events, identity, through = 0, withheld = []) => guard.run(() => commitEvents(state, events, identity, through, withheld), eventBytes(events, withheld)),
    updateMeta: (update) => commitMetaUpdate(state, update, guard),
    beginSnapshot: () => beginSnapshot(state, guard),
    newestPut(entries) {
      for (const { value } of tables.log.getRange({ reverse: true, limit: entries })) {
        const puts = decodeLogEntry(value).filter((event) => event.type === 'PUT');
        const newest = puts[puts.length - 1];
        if (newest !== undefined) return newest.kv;
      }
      // One pass over the keys, at a (re)connect after a list or an adoption, until events fill the log.
      let newest: EncodedKeyValue | null = null;
      for (const record of scanRecords(active(), Buffer.alloc(0), null)) if (newest === null || record.mod_revision > newest.mod_revision) newest = record;
      return newest;
    },
    *eventsAfter(after) {
      for (const { key, value } of tables.log.getRange({ start: after + 1 })) yield { revision: key, events: decodeLogEntry(value) };
    },
    pruneLog: (keepFrom) => pruneLog(state, keepFrom, guard),
    wipe: () => wipeStore(state, guard),
    withheld: (key) => getRecord(tables.withheld, key),
    allWithheld: () => allWithheld(tables.withheld),
    withheldCount: () => withheldCount(tables.withheld),
    grayscaleSettings: () => tables.grayscale?.get('settings') ?? '',
    rederive: (visible, withheld, settings) =>
      guard.run(
        () => rederive(state, visible, withheld, settings),
        2 * [...visible.map((change) => change.record), ...withheld.map((change) => change.record)].reduce((sum, record) => sum + (record?.bytes.length ?? 0), 0),
      ),
    stats: () => storeStats(state),
    view: () => viewStore(tables),
    writeHold: () => guard.held,
    whenWritable: () => guard.whenWritable(),
    resumeWrites: () => guard.resume(),
    onWriteNotice: (listener) => guard.onNotice(listener),
    freeBytes: async () => {
      const found = await statfs(path);
      return found.bavail * found.bsize;
    },
    members: () => tables.members.get('members') ?? null,
    saveMembers(members) {
      guard.runOrDefer('members', () => tables.members.putSync('members', members));
    },
    authState: () => tables.auth?.get('auth') ?? null,
    saveAuthState: (authState) => guard.runOrDefer('auth', () => saveAuthState(tables.auth, authState)),
    close: () => {
      reserve?.close();
      return tables.root.close();
    },
  };
}

/** What a commit of these events may add to the file at most: each event in its key's table and in the log (with prev_kv), pages' slack. */
function eventBytes(events: readonly EncodedEvent[], withheld: readonly WithheldChange[]): number {
  let bytes = 0;
  for (const event of events) bytes += 2 * event.bytes.length;
  for (const change of withheld) bytes += change.record?.bytes.length ?? 0;
  return 2 * bytes;
}
