import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { toStoreKey } from './key-codec';
import { activeTable, writeMeta, type StoreState } from './store-state';
import { applyWithheld, type WithheldChange } from './withheld-table';

/**
 * Replaces the visible versions and withheld ones of some keys at the current
 * revision (grayscale settings changed), and records the settings they were
 * derived under: the log starts afresh, as after a list, since its events
 * were of the old view.
 */
export function rederive(state: StoreState, visible: readonly { key: Buffer; record: EncodedKeyValue | null }[], withheld: readonly WithheldChange[], settings: string): void {
  const { tables } = state;
  tables.root.transactionSync(() => {
    if (tables.grayscale === undefined) throw new Error('etcd-cache-proxy: the store is open read-only');
    tables.grayscale.putSync('settings', settings);
    if (visible.length === 0 && withheld.length === 0) return;
    const kv = activeTable(state);
    for (const { key, record } of visible) {
      if (record === null) kv.removeSync(toStoreKey(key));
      else kv.putSync(toStoreKey(key), record.bytes);
    }
    applyWithheld(tables.withheld, withheld);
    tables.log.clearSync();
    const next = { ...state.meta, logStart: state.meta.revision + 1 };
    writeMeta(tables, next);
    state.meta = next;
  });
}
