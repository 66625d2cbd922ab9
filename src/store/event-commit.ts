import type { EncodedEvent } from '../etcd/event-bytes';
import type { HeaderIdentity } from '../etcd/records';
import { toStoreKey } from './key-codec';
import { encodeLogEntry } from './log-entry';
import type { PersistedMeta } from './meta';
import { writeMeta, type StoreState } from './store-state';
import type { StoreTables } from './store-tables';
import { applyWithheld, type WithheldChange } from './withheld-table';
import type { WriteGuard } from './write-hold';

/** Where a write that can wait is made now or kept: the store's guard, or its background commits while one is in flight. */
export type DeferringWriter = Pick<WriteGuard, 'runOrDefer'>;

/**
 * Applies one upstream watch response: every event, the log entries, and the
 * new mirror revision (the highest of the events' and `through`, which the
 * watch vouches for without mirrored events), in one LMDB transaction.
 * Returns the new M.
 */
export function commitEvents(state: StoreState, events: readonly EncodedEvent[], identity: HeaderIdentity, through: number, withheld: readonly WithheldChange[]): number {
  if (!hasWork(state.meta, events, through, withheld)) return state.meta.revision;
  state.meta = state.tables.root.transactionSync(() => writeEvents(state.tables, state.meta, events, identity, through, withheld));
  return state.meta.revision;
}

/** Whether a response changes anything: events, withheld versions, or a revision past M. */
export function hasWork(meta: PersistedMeta, events: readonly EncodedEvent[], through: number, withheld: readonly WithheldChange[]): boolean {
  return events.length > 0 || withheld.length > 0 || through > meta.revision;
}

/** Writes a response's events, log entries and the meta that follows `meta` into the transaction open now; returns that meta. */
export function writeEvents(
  tables: StoreTables,
  meta: PersistedMeta,
  events: readonly EncodedEvent[],
  identity: HeaderIdentity,
  through: number,
  withheld: readonly WithheldChange[],
): PersistedMeta {
  const kv = tables.kv[meta.activeKv];
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
  // A batch may hold many revisions (a catch-up after an outage): no spread of them into one call's arguments.
  let revision = Math.max(meta.revision, through);
  let lowest = Infinity;
  for (const logged of byRevision.keys()) {
    revision = Math.max(revision, logged);
    lowest = Math.min(lowest, logged);
  }
  const logStart = meta.logStart === 0 && byRevision.size > 0 ? lowest : meta.logStart;
  const next = { ...meta, identity, revision, logStart };
  writeMeta(tables, next);
  return next;
}

/**
 * Records what the upstream said about itself (term changes, compaction) without events; the compaction point never goes back.
 * It is known at once; while the store cannot write for lack of room, it is written when it can again.
 */
export function commitMetaUpdate(state: StoreState, update: { identity?: HeaderIdentity; compactRevision?: number }, guard: DeferringWriter): void {
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
