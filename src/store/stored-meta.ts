import type { Logger } from '../log';
import { EMPTY_META, otherSlot, SCHEMA_VERSION, type PersistedMeta } from './meta';
import { upgradeFromSchema1 } from './schema-upgrade';
import type { StoreState } from './store-state';
import type { StoreTables } from './store-tables';

/** Stores written before prefixes could be chosen hold the whole keyspace. */
function withScope(found: PersistedMeta | undefined): PersistedMeta {
  return found === undefined ? EMPTY_META : { ...found, scope: found.scope ?? 'all' };
}

/** Schema 1 to 2 in one write transaction: a crash midway leaves schema 1 as it was, converted again at the next open. */
function upgrade(tables: StoreTables, old: PersistedMeta, path: string, readOnly: boolean, log: Logger | undefined): PersistedMeta {
  if (readOnly) {
    throw new Error(`etcd-cache-proxy: ${path} has store schema 1; start the proxy on it once to convert it to schema ${SCHEMA_VERSION}`);
  }
  const started = Date.now();
  const next: PersistedMeta = { ...old, schemaVersion: SCHEMA_VERSION };
  const converted = tables.root.transactionSync(() => {
    const result = upgradeFromSchema1(tables.root, { activeKv: tables.kv[old.activeKv], inactiveKv: tables.kv[otherSlot(old.activeKv)], log: tables.log }, old.activeKv);
    tables.meta.putSync('meta', next);
    return result;
  });
  log?.info({ from: 1, to: SCHEMA_VERSION, ...converted, ms: Date.now() - started }, 'store converted in place to etcd encodings; the mirror is kept');
  return next;
}

/**
 * The meta of a store just opened; a store of schema 1 is converted in place
 * before anything reads it, one of another schema is refused. On failure the
 * environment is closed here: nobody gets a handle to close, and an open one
 * would block the next open in this process.
 */
export function readStoredMeta(tables: StoreTables, path: string, readOnly: boolean, log: Logger | undefined): PersistedMeta {
  let stored: PersistedMeta | undefined;
  try {
    const found = tables.meta.get('meta');
    stored = found?.schemaVersion === 1 ? upgrade(tables, found, path, readOnly, log) : found;
    if (stored !== undefined && stored.schemaVersion !== SCHEMA_VERSION) {
      throw new Error(`etcd-cache-proxy: ${path} has store schema ${stored.schemaVersion}, this version reads ${SCHEMA_VERSION}`);
    }
  } catch (error) {
    void tables.root.close();
    throw error;
  }
  return withScope(stored);
}

/** Reads the meta again from the latest commit (a store open read-only in another process than its writer's). */
export function refreshMeta(state: StoreState): PersistedMeta {
  state.tables.root.resetReadTxn();
  state.meta = withScope(state.tables.meta.get('meta'));
  return state.meta;
}

/**
 * The meta as the current read snapshot has it (a store open read-only in
 * another process than its writer's): read in the same synchronous stretch
 * as the keys it goes with, so an answer's revision is that of its keys,
 * never older (the writer may have committed since the last refresh).
 */
export function metaInSnapshot(state: StoreState): PersistedMeta {
  state.meta = withScope(state.tables.meta.get('meta'));
  return state.meta;
}
