import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// Thousands of Watch streams opened at once cost the heap about 13 KiB each
// while they are open (grpc-js's call, Node's HTTP/2 stream, the session),
// long enough for V8 to move it all to its old generation. When they close,
// that is garbage V8 collects only once the process allocates enough to ask
// for a full collection, and an idle proxy does not: measured here, the heap
// of a proxy that had served 10 000 streams stayed 150 MiB above where it
// started for minutes after they had all closed. So once a flood of streams
// has closed and the closing has stopped, the proxy collects once itself.

/** Streams closed since the last collection that make the collection worth it (fewer cost little memory). */
export const FLOOD_CLOSED_STREAMS = 1_000;
/**
 * How long no stream may have closed before collecting (between this long
 * and twice as long): the flood is over, nothing is paused in the middle of
 * it, and what the closed connections held has been let go (Node's HTTP/2
 * teardown and grpc-js's timers keep some of it a few seconds): measured
 * with 10 000 streams, a collection 2 s after the last close left RSS 50-70
 * MiB above idle, one after 10 s 16-21 MiB.
 */
export const FLOOD_QUIET_MS = 10_000;
/** At most one collection this often, whatever the clients do. */
export const MIN_COLLECTION_INTERVAL_MS = 30_000;

export interface FloodMemory {
  /** A stream closed. */
  streamClosed(): void;
}

/**
 * Counts closed streams and collects after a flood of them; `collect` is V8's
 * full collection unless a test gives another. Its timer never holds the
 * process open.
 */
export function floodMemory(collect: () => void = fullCollection, now: () => number = Date.now): FloodMemory {
  let closed = 0;
  /** `closed` when the timer was last set: more since then means the flood is still closing. */
  let closedWhenSet = 0;
  let lastCollection = -Infinity;
  let timer: NodeJS.Timeout | null = null;
  const wake = (ms: number): void => {
    closedWhenSet = closed;
    timer = setTimeout(due, ms);
    timer.unref();
  };
  const due = (): void => {
    // Streams closed since it was set: look again once they have stopped (nothing is timed per close).
    if (closed !== closedWhenSet) return wake(FLOOD_QUIET_MS);
    const tooSoon = lastCollection + MIN_COLLECTION_INTERVAL_MS - now();
    if (tooSoon > 0) return wake(tooSoon);
    timer = null;
    closed = 0;
    lastCollection = now();
    collect();
  };
  return {
    streamClosed() {
      closed += 1;
      if (closed >= FLOOD_CLOSED_STREAMS && timer === null) wake(FLOOD_QUIET_MS);
    },
  };
}

let collectGarbage: (() => void) | undefined;

/**
 * A full collection, twice: the first frees the garbage, the second returns
 * to the system the pages the first emptied (V8 releases them once they are
 * swept). Node exposes no collection without --expose-gc, which the proxy
 * turns on for itself here rather than asking every operator for the flag.
 * Also used after a busy period (quiet-memory.ts).
 */
export function fullCollection(): void {
  if (collectGarbage === undefined) {
    setFlagsFromString('--expose-gc');
    collectGarbage = runInNewContext('gc') as () => void;
  }
  collectGarbage();
  collectGarbage();
}
