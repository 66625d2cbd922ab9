import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { toRevision } from '../etcd/wire';

/** What a Range reads: the mirror's current keys, or a view of them at an older revision. */
export interface KeyReader {
  get(key: Buffer): EncodedKeyValue | undefined;
  scan(start: Buffer, end: Buffer | null): Iterable<EncodedKeyValue>;
  /** Optional fast path for count_only. */
  count?(start: Buffer, end: Buffer | null): number;
}

export const SORT_ORDERS = ['NONE', 'ASCEND', 'DESCEND'] as const;
export const SORT_TARGETS = ['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE'] as const;
export type SortOrder = (typeof SORT_ORDERS)[number];
export type SortTarget = (typeof SORT_TARGETS)[number];

/** A RangeRequest as proto-loader decodes it (absent = zero). */
export interface WireRangeRequest {
  key?: Buffer;
  range_end?: Buffer;
  limit?: string;
  revision?: string;
  sort_order?: SortOrder | number;
  sort_target?: SortTarget | number;
  serializable?: boolean;
  keys_only?: boolean;
  count_only?: boolean;
  min_mod_revision?: string;
  max_mod_revision?: string;
  min_create_revision?: string;
  max_create_revision?: string;
}

export interface RangeResult {
  readonly kvs: readonly EncodedKeyValue[];
  readonly count: number;
  readonly more: boolean;
  readonly keysOnly: boolean;
}

/** Why a request cannot be answered from the mirror as etcd would; the caller forwards or errors. */
export type RangeRefusal = 'emptyKey' | 'invalidSortOption' | 'unsupported';

export function validateRange(request: WireRangeRequest): RangeRefusal | null {
  if (request.key === undefined || request.key.length === 0) return 'emptyKey';
  // A range_end sent as an empty field (not left out) is read by etcd as "every key from key on", and its
  // auth checks it as the single key: a quirk the mirror leaves to etcd rather than copy.
  if (request.range_end !== undefined && request.range_end.length === 0) return 'unsupported';
  const order = request.sort_order ?? 'NONE';
  const target = request.sort_target ?? 'KEY';
  if (typeof order !== 'string' || !SORT_ORDERS.includes(order)) return 'invalidSortOption';
  if (typeof target !== 'string' || !SORT_TARGETS.includes(target)) return 'invalidSortOption';
  return null;
}

/** Each reads only the field it sorts by from the stored bytes. */
const compareBy: Record<SortTarget, (a: EncodedKeyValue, b: EncodedKeyValue) => number> = {
  KEY: (a, b) => Buffer.compare(a.key, b.key),
  VERSION: (a, b) => a.version - b.version,
  CREATE: (a, b) => a.create_revision - b.create_revision,
  MOD: (a, b) => a.mod_revision - b.mod_revision,
  VALUE: (a, b) => Buffer.compare(a.value, b.value),
};

/**
 * Answers a Range from the mirror's current content exactly as etcd's apply
 * step does: count is every key in the range; revision filters prune after
 * the fetch; a sort target other than KEY sorts ascending unless told
 * otherwise; limit truncates last and sets `more`. Validate first.
 */
export function evaluateRange(store: KeyReader, request: WireRangeRequest): RangeResult {
  const key = request.key ?? Buffer.alloc(0);
  const rangeEnd = request.range_end ?? Buffer.alloc(0);
  const limit = toRevision(request.limit);
  const target = (request.sort_target ?? 'KEY') as SortTarget;
  let order = (request.sort_order ?? 'NONE') as SortOrder;
  const bounds = {
    minMod: toRevision(request.min_mod_revision),
    maxMod: toRevision(request.max_mod_revision),
    minCreate: toRevision(request.min_create_revision),
    maxCreate: toRevision(request.max_create_revision),
  };
  const keysOnly = request.keys_only === true;

  const end = isAllAbove(rangeEnd) ? null : rangeEnd;
  if (request.count_only === true && rangeEnd.length > 0 && store.count !== undefined) {
    return { kvs: [], count: store.count(key, end), more: false, keysOnly };
  }
  const all = rangeEnd.length === 0 ? single(store, key) : [...store.scan(key, end)];
  if (request.count_only === true) return { kvs: [], count: all.length, more: false, keysOnly };

  // etcd fetches everything only when asked to sort or filter; otherwise it
  // takes limit+1 keys in key order first (the extra one tells `more`), and
  // a target-only sort (order NONE) then sorts just those.
  const hasFilter = bounds.minMod !== 0 || bounds.maxMod !== 0 || bounds.minCreate !== 0 || bounds.maxCreate !== 0;
  const fetched = order === 'NONE' && !hasFilter && limit > 0 ? all.slice(0, limit + 1) : all;
  const filtered = fetched.filter(
    (kv) =>
      (bounds.maxMod === 0 || kv.mod_revision <= bounds.maxMod) &&
      (bounds.minMod === 0 || kv.mod_revision >= bounds.minMod) &&
      (bounds.maxCreate === 0 || kv.create_revision <= bounds.maxCreate) &&
      (bounds.minCreate === 0 || kv.create_revision >= bounds.minCreate),
  );
  if (target !== 'KEY' && order === 'NONE') order = 'ASCEND';
  if (order !== 'NONE') {
    const compare = compareBy[target];
    filtered.sort(order === 'ASCEND' ? compare : (a, b) => compare(b, a));
  }
  const more = limit > 0 && filtered.length > limit;
  return { kvs: more ? filtered.slice(0, limit) : filtered, count: all.length, more, keysOnly };
}

function single(store: KeyReader, key: Buffer): EncodedKeyValue[] {
  const record = store.get(key);
  return record === undefined ? [] : [record];
}

/** etcd's range_end "\0": every key at or above `key`. */
export function isAllAbove(rangeEnd: Buffer): boolean {
  return rangeEnd.length === 1 && rangeEnd[0] === 0;
}
