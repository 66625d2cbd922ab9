import type { Counter } from 'prom-client';
import { statusName } from '../etcd/errors';

/** Where an answer came from: the upstream cluster or the proxy's own mirror. */
export type Source = 'upstream' | 'mirror' | 'proxy';

/** One RPC as metrics name it. */
export interface CallLabels {
  readonly service: string;
  readonly method: string;
}

const SOURCES: readonly Source[] = ['upstream', 'mirror', 'proxy'];
/** gRPC status codes run 0..16. */
const STATUS_CODES = 17;

interface PendingCount {
  readonly labels: Record<'service' | 'method' | 'code' | 'source', string>;
  count: number;
}

/**
 * Finished calls counted as plain numbers, one slot per RPC, status and
 * source, and handed to the prom-client counter whenever it is read (a
 * scrape, or get()): a read from the mirror takes microseconds, and
 * prom-client's label hashing per call was a measurable share of it.
 */
export class CallCounts {
  private readonly slots = new WeakMap<CallLabels, (PendingCount | undefined)[]>();
  private readonly pending = new Set<PendingCount>();

  count(rpc: CallLabels, code: number, source: Source): void {
    let slots = this.slots.get(rpc);
    if (slots === undefined) {
      slots = new Array<PendingCount | undefined>(STATUS_CODES * SOURCES.length);
      this.slots.set(rpc, slots);
    }
    const index = (code >= 0 && code < STATUS_CODES ? code : STATUS_CODES - 1) * SOURCES.length + SOURCES.indexOf(source);
    let slot = slots[index];
    if (slot === undefined) {
      slot = { labels: { service: rpc.service, method: rpc.method, code: statusName(code), source }, count: 0 };
      slots[index] = slot;
    }
    if (slot.count === 0) this.pending.add(slot);
    slot.count += 1;
  }

  /** Moves what was counted since the last read into the counter. */
  flush(counter: Counter<'service' | 'method' | 'code' | 'source'>): void {
    for (const slot of this.pending) {
      counter.inc(slot.labels, slot.count);
      slot.count = 0;
    }
    this.pending.clear();
  }
}

/** Counts by a `result` label as plain numbers, moved into the counter when it is read (as CallCounts). */
export class ResultCounts<R extends string> {
  private readonly pending = new Map<R, number>();

  count(result: R): void {
    this.pending.set(result, (this.pending.get(result) ?? 0) + 1);
  }

  flush(counter: Counter<'result'>): void {
    for (const [result, count] of this.pending) counter.inc({ result }, count);
    this.pending.clear();
  }
}
