import type { EncodedEvent } from '../etcd/event-bytes';
import type { HeaderIdentity } from '../etcd/records';
import { toStoreKey } from './key-codec';
import { encodeLogEntry } from './log-entry';
import { activeTable, writeMeta, type StoreState } from './store-state';
import { applyWithheld, type WithheldChange } from './withheld-table';
import type { WriteGuard } from './write-hold';

/**
 * Applies one upstream watch response: every event, the log entries, and the
 * new mirror revision (the highest of the events' and `through`, which the
 * watch vouches for without mirrored events), in one LMDB transaction.
 * Returns the new M.
 */
export function commitEvents(state: StoreState, events: readonly EncodedEvent[], identity: HeaderIdentity, through: number, withheld: readonly WithheldChange[]): number {
  const { tables } = state;
  if (events.length === 0 && withheld.length === 0 && through <= state.meta.revision) return state.meta.revision;
  state.meta = tables.root.transactionSync(() => {
    const { meta } = state;
    const kv = activeTable(state);
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
    for (const [revision, group] of byRevision) tables.log.putSync(revision, encodeLogEntry(group));
    applyWithheld(tables.withheld, withheld);
    const revision = Math.max(meta.revision, through, ...byRevision.keys());
    const logStart = meta.logStart === 0 && byRevision.size > 0 ? Math.min(...byRevision.keys()) : meta.logStart;
    const next = { ...meta, identity, revision, logStart };
    writeMeta(tables, next);
    return next;
  });
  return state.meta.revision;
}

/**
 * Records what the upstream said about itself (term changes, compaction) without events; the compaction point never goes back.
 * It is known at once; while the store cannot write for lack of room, it is written when it can again.
 */
export function commitMetaUpdate(state: StoreState, update: { identity?: HeaderIdentity; compactRevision?: number }, guard: WriteGuard): void {
  const previous = state.meta;
  state.meta = {
    ...previous,
    ...(update.identity === undefined ? {} : { identity: update.identity }),
    ...(update.compactRevision === undefined ? {} : { compactRevision: Math.max(previous.compactRevision, update.compactRevision) }),
  };
  try {
    // The write made (maybe later) is of the meta as it is then: every commit meanwhile carries this update too.
    guard.runOrDefer('meta', () => writeMeta(state.tables, state.meta));
  } catch (error) {
    state.meta = previous;
    throw error;
  }
}
