import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { MIN_COLLECTION_INTERVAL_MS, fullCollection } from './flood-memory';

// Under load V8 grows its young generation (to 32 MiB here, from 1) and
// leaves garbage in the old one; it gives both back only in a full
// collection that finds the process allocating slowly, and a proxy that goes
// quiet after a busy period allocates too little to ask for one: measured
// here, a minute after 20 s of reads the heap stayed at 54 MiB for 20 in use
// (15.8 idle), the young generation at 32 MiB, for as long as nobody came.
// So when the heap has grown since the last collection and the event loop has
// been quiet for a while, the process collects once itself. V8 shrinks the
// young generation in that collection only when it sees little allocation in
// its last few seconds, hence the quiet period before it.

/** How often the heap and the event loop are looked at: two cheap reads, nothing on any request's path. */
export const CHECK_INTERVAL_MS = 5_000;
/** Heap growth over its least since the last collection that makes a collection worth it. */
export const GROWN_BYTES = 8 * 1024 * 1024;
/** How long the event loop must have been quiet before collecting (V8 judges allocation over about 5 s). */
export const QUIET_MS = 10_000;
/** At most this share of an interval busy, for the interval to count as quiet. */
export const QUIET_UTILISATION = 0.1;

/** What the collector reads; the process's own unless a test gives others. */
export interface MemoryReadings {
  /** V8's heap as reserved (young and old generations). */
  heapBytes(): number;
  /** Share of the time since the last call the event loop was busy, 0..1. */
  utilisation(): number;
}

export interface QuietMemory {
  /** Stops looking (the timer never holds the process open anyway). */
  stop(): void;
}

/**
 * Looks at the heap every CHECK_INTERVAL_MS and collects once when it has
 * grown by GROWN_BYTES over its least since the last collection and the
 * event loop has been quiet for QUIET_MS; never more often than
 * MIN_COLLECTION_INTERVAL_MS. `collect` is V8's full collection unless a
 * test gives another.
 */
export function quietMemory(collect: () => void = fullCollection, readings: MemoryReadings = processReadings(), now: () => number = Date.now): QuietMemory {
  let least = readings.heapBytes();
  let quietFor = 0;
  let lastCollection = -Infinity;
  const check = (): void => {
    const heap = readings.heapBytes();
    least = Math.min(least, heap);
    quietFor = readings.utilisation() < QUIET_UTILISATION ? quietFor + CHECK_INTERVAL_MS : 0;
    if (heap - least < GROWN_BYTES || quietFor < QUIET_MS || now() - lastCollection < MIN_COLLECTION_INTERVAL_MS) return;
    lastCollection = now();
    collect();
    // What is left after the collection is what the process holds: growth counts from here.
    least = readings.heapBytes();
  };
  const timer = setInterval(check, CHECK_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** The heap from V8's statistics, the event loop's utilisation from perf_hooks, each interval against the last. */
function processReadings(): MemoryReadings {
  let last = performance.eventLoopUtilization();
  return {
    heapBytes: () => getHeapStatistics().total_heap_size,
    utilisation: () => {
      const next = performance.eventLoopUtilization();
      const utilisation = performance.eventLoopUtilization(next, last).utilization;
      last = next;
      return utilisation;
    },
  };
}
