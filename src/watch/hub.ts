import type { Mirror } from '../mirror/mirror';
import type { EncodedEvent } from '../etcd/event-bytes';
import type { StoreMeta } from '../store/meta';
import type { MirrorStore } from '../store/store';
import { selectEvents, specRange, type WatchSpec } from './watch-spec';

/** Revisions one catch-up step reads from the log before giving other work a turn. */
const CATCH_UP_REVISIONS = 1_000;

/** Where a watcher's messages go: its downstream stream, which encodes and sends them. */
export interface WatchSink {
  /** Events owed to the watcher, all of revision <= `revision` (the header revision). */
  events(watcher: HubWatcher, revision: number, events: readonly EncodedEvent[]): void;
  /** The watcher asked for history the mirror no longer has: cancel it as compacted. */
  compacted(watcher: HubWatcher, compactRevision: number): void;
  /** False while the downstream stream is not draining: catch-up waits for it. */
  writable(): boolean;
}

export interface HubWatcher {
  readonly spec: WatchSpec;
  readonly sink: WatchSink;
  /** The first revision whose events this watcher has not been sent yet. */
  readonly nextRevision: number;
  /** True once it has caught up with the mirror and gets live events. */
  readonly synced: boolean;
}

interface WatcherState extends HubWatcher {
  nextRevision: number;
  synced: boolean;
}

const selectionKeys = new WeakMap<WatchSpec, string>();

/** What decides which events a watcher gets: its range and filters (computed once per watcher). */
function selectionKey(spec: WatchSpec): string {
  let key = selectionKeys.get(spec);
  if (key === undefined) {
    key = `${spec.key.toString('hex')}|${spec.end?.toString('hex') ?? '-'}|${spec.single ? 1 : 0}${spec.noPut ? 1 : 0}${spec.noDelete ? 1 : 0}`;
    selectionKeys.set(spec, key);
  }
  return key;
}

/** The smallest start revision the log can replay from (etcd's compact revision, for the mirror). */
export function oldestWatchable(meta: StoreMeta): number {
  const fromLog = meta.logStart > 0 ? meta.logStart : meta.revision + 1;
  return Math.max(fromLog, meta.compactRevision);
}

/**
 * Fans the mirror's committed events out to every downstream watcher. A
 * watcher starting in the past is unsynced: it is fed from the event log in
 * steps (each a synchronous read up to M), and joins the live fan-out in the
 * same step that reaches M, so nothing is missed or sent twice at the seam.
 * Live events reach synced watchers in the tick they are committed.
 */
export class WatchHub {
  private readonly synced = new Set<WatcherState>();
  private readonly unsynced = new Set<WatcherState>();
  private catchUpScheduled = false;

  constructor(
    private readonly store: MirrorStore,
    mirror: Mirror,
    private readonly onReplayed: (events: number) => void = () => undefined,
  ) {
    mirror.on('applied', (revision, events) => this.fanOut(revision, events));
    mirror.on('relisted', (revision, previous) => this.afterRelist(revision, previous));
    mirror.on('adopted', (revision, previous) => this.afterRelist(revision, previous));
    mirror.on('discarded', (previous) => this.cancelAll(previous + 1));
    mirror.on('rederived', (_revision, touches) => this.cancelAll(oldestWatchable(this.store.meta()), (spec) => {
      const { key, rangeEnd } = specRange(spec);
      return touches(key, rangeEnd);
    }));
  }

  /** Watchers registered now (for metrics). */
  size(): number {
    return this.synced.size + this.unsynced.size;
  }

  /**
   * Registers a watcher. Returns false (and registers nothing) when its start
   * revision is older than the log: the caller cancels it as compacted.
   */
  add(spec: WatchSpec, sink: WatchSink): HubWatcher | { compactRevision: number } {
    const meta = this.store.meta();
    const start = spec.startRevision > 0 ? spec.startRevision : meta.revision + 1;
    const oldest = oldestWatchable(meta);
    if (start < oldest) return { compactRevision: oldest };
    const watcher: WatcherState = { spec, sink, nextRevision: start, synced: false };
    if (start > meta.revision) {
      watcher.synced = true;
      this.synced.add(watcher);
    } else {
      this.unsynced.add(watcher);
      this.scheduleCatchUp();
    }
    return watcher;
  }

  remove(watcher: HubWatcher): void {
    this.synced.delete(watcher as WatcherState);
    this.unsynced.delete(watcher as WatcherState);
  }

  /** Sinks that are writable again may let their unsynced watchers go on. */
  resume(): void {
    if (this.unsynced.size > 0) this.scheduleCatchUp();
  }

  private fanOut(revision: number, events: readonly EncodedEvent[]): void {
    // Watchers with the same range and filters get the same array, so a sink can encode it once for all of them.
    const selected = new Map<string, EncodedEvent[]>();
    const firstRevision = events[0]?.kv.mod_revision ?? revision;
    for (const watcher of this.synced) {
      const signature = `${selectionKey(watcher.spec)}@${watcher.nextRevision <= firstRevision ? 0 : watcher.nextRevision}`;
      let owed = selected.get(signature);
      if (owed === undefined) {
        owed = selectEvents(watcher.spec, events, watcher.nextRevision);
        selected.set(signature, owed);
      }
      watcher.nextRevision = Math.max(watcher.nextRevision, revision + 1);
      if (owed.length > 0) watcher.sink.events(watcher, revision, owed);
    }
  }

  private scheduleCatchUp(): void {
    if (this.catchUpScheduled) return;
    this.catchUpScheduled = true;
    setImmediate(() => {
      this.catchUpScheduled = false;
      this.catchUp();
    });
  }

  /** One step for every unsynced watcher whose stream can take more. */
  private catchUp(): void {
    const meta = this.store.meta();
    const oldest = oldestWatchable(meta);
    for (const watcher of this.unsynced) {
      if (watcher.nextRevision < oldest) {
        // History it still needed was pruned (or compacted upstream) while it waited.
        this.unsynced.delete(watcher);
        watcher.sink.compacted(watcher, oldest);
        continue;
      }
      if (!watcher.sink.writable()) continue;
      const until = Math.min(meta.revision, watcher.nextRevision + CATCH_UP_REVISIONS - 1);
      const owed: EncodedEvent[] = [];
      for (const { revision, events } of this.store.eventsAfter(watcher.nextRevision - 1)) {
        if (revision > until) break;
        owed.push(...selectEvents(watcher.spec, events, watcher.nextRevision));
      }
      watcher.nextRevision = until + 1;
      if (owed.length > 0) {
        this.onReplayed(owed.length);
        watcher.sink.events(watcher, meta.revision, owed);
      }
      if (watcher.nextRevision > meta.revision) {
        // Caught up within this synchronous step: the next commit reaches it live.
        this.unsynced.delete(watcher);
        watcher.synced = true;
        this.synced.add(watcher);
      }
    }
    // A watcher whose stream is full goes on when the stream drains (resume()); the rest go on now.
    if ([...this.unsynced].some((w) => w.sink.writable())) this.scheduleCatchUp();
  }

  /**
   * The mirror's content was replaced by a list at `revision`: the events
   * between what a watcher has seen and `revision` are gone, so such watchers
   * are cancelled as compacted and clients list again, as they do with etcd.
   */
  private afterRelist(revision: number, previous: number): void {
    const oldest = oldestWatchable(this.store.meta());
    for (const watcher of [...this.synced, ...this.unsynced]) {
      // A synced watcher has had everything up to the mirror revision before the list.
      const seenThrough = watcher.synced ? Math.max(previous, watcher.nextRevision - 1) : watcher.nextRevision - 1;
      if (seenThrough >= revision) continue;
      this.remove(watcher);
      watcher.sink.compacted(watcher, oldest);
    }
  }

  /** The mirror held another cluster's data (or a restored one's): nobody's position means anything now. */
  private cancelAll(compactRevision: number, which: (spec: WatchSpec) => boolean = () => true): void {
    for (const watcher of [...this.synced, ...this.unsynced]) {
      if (!which(watcher.spec)) continue;
      this.remove(watcher);
      watcher.sink.compacted(watcher, compactRevision);
    }
  }
}
