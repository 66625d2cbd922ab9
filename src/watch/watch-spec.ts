import type { EncodedEvent } from '../etcd/event-bytes';

/** A Watch create request as proto-loader decodes it. */
export interface WireWatchCreateRequest {
  key?: Buffer;
  range_end?: Buffer;
  start_revision?: string;
  progress_notify?: boolean;
  filters?: ('NOPUT' | 'NODELETE' | number)[];
  prev_kv?: boolean;
  watch_id?: string;
  fragment?: boolean;
}

/** What one downstream watch asks for, with etcd's reading of key and range_end applied. */
export interface WatchSpec {
  readonly key: Buffer;
  /** Exclusive end; null with `single` false means every key from `key` on. */
  readonly end: Buffer | null;
  readonly single: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly prevKv: boolean;
  readonly fragment: boolean;
  readonly progressNotify: boolean;
  /** 0: from the next revision. */
  readonly startRevision: number;
}

/**
 * Reads a create request as etcd does: an empty key is "\0" (the smallest
 * key), an empty range_end one key, range_end "\0" every key from key on.
 * Returns the error text etcd gives for a range that names no key.
 */
export function toWatchSpec(request: WireWatchCreateRequest): WatchSpec | { error: string } {
  const key = request.key !== undefined && request.key.length > 0 ? request.key : Buffer.from([0]);
  const rangeEnd = request.range_end ?? Buffer.alloc(0);
  const single = rangeEnd.length === 0;
  const end = single || (rangeEnd.length === 1 && rangeEnd[0] === 0) ? null : rangeEnd;
  if (end !== null && Buffer.compare(key, end) >= 0) return { error: 'mvcc: watcher range is empty' };
  const filters = request.filters ?? [];
  return {
    key,
    end,
    single,
    noPut: filters.some((f) => f === 'NOPUT' || f === 0),
    noDelete: filters.some((f) => f === 'NODELETE' || f === 1),
    prevKv: request.prev_kv === true,
    fragment: request.fragment === true,
    progressNotify: request.progress_notify === true,
    startRevision: Number(request.start_revision ?? '0'),
  };
}

export function watchesKey(spec: WatchSpec, key: Buffer): boolean {
  if (spec.single) return key.equals(spec.key);
  return Buffer.compare(key, spec.key) >= 0 && (spec.end === null || Buffer.compare(key, spec.end) < 0);
}

/** The events of one batch this watch is owed: its keys, its filters, from `from` on. */
export function selectEvents(spec: WatchSpec, events: readonly EncodedEvent[], from: number): EncodedEvent[] {
  return events.filter(
    (event) =>
      event.kv.mod_revision >= from &&
      !(event.type === 'PUT' ? spec.noPut : spec.noDelete) &&
      watchesKey(spec, event.kv.key),
  );
}

/** The (key, range_end) of the spec as a request would spell it, for coverage checks. */
export function specRange(spec: WatchSpec): { key: Buffer; rangeEnd: Buffer } {
  return { key: spec.key, rangeEnd: spec.single ? Buffer.alloc(0) : (spec.end ?? Buffer.from([0])) };
}
