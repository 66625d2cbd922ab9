import type { EtcdRevision, RangeRequest, RecordedKv } from '../history';

/** etcd orders keys by their bytes. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Whether `key` falls in etcd's range [from, end): '' is `from` alone, '\0' is every key from `from` on. */
export function inRange(key: string, from: string, end: string): boolean {
  if (end === '') return key === from;
  if (compareKeys(key, from) < 0) return false;
  return end === '\0' || compareKeys(key, end) < 0;
}

/** What a Range answers, as etcd computes it from a keyspace. */
export interface ExpectedRange {
  readonly kvs: readonly RecordedKv[];
  readonly count: number;
  readonly more: boolean;
}

/**
 * etcd's keyspace as its history builds it, one revision at a time: the
 * checker moves it forward to each answer's revision and compares.
 */
export class Keyspace {
  private readonly current = new Map<string, RecordedKv>();
  private applied = 0;

  get revision(): number {
    return this.applied;
  }

  /** Applies every revision of `history` up to and including `target` (history ascending). */
  advance(history: readonly EtcdRevision[], target: number, from: { index: number }): void {
    while (from.index < history.length) {
      const next = history[from.index];
      if (next === undefined || next.revision > target) break;
      for (const event of next.events) {
        if (event.type === 'put') this.current.set(event.kv.key, event.kv);
        else this.current.delete(event.kv.key);
      }
      this.applied = next.revision;
      from.index += 1;
    }
    this.applied = Math.max(this.applied, target);
  }

  /** The answer etcd gives `request` against this keyspace (sorted by key, the default order). */
  range(request: Pick<RangeRequest, 'key' | 'rangeEnd' | 'limit' | 'countOnly' | 'keysOnly'>): ExpectedRange {
    const matching = [...this.current.values()].filter((kv) => inRange(kv.key, request.key, request.rangeEnd)).sort((a, b) => compareKeys(a.key, b.key));
    const limited = request.limit > 0 ? matching.slice(0, request.limit) : matching;
    const kvs = request.countOnly ? [] : request.keysOnly ? limited.map((kv) => ({ ...kv, value: '' })) : limited;
    // etcd counts `more` from the keys it read: a count-only Range reads none, so it never says more.
    return { kvs, count: matching.length, more: !request.countOnly && request.limit > 0 && matching.length > request.limit };
  }

  get(key: string): RecordedKv | undefined {
    return this.current.get(key);
  }
}
