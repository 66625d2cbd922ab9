// After a busy period, once the process is quiet, it collects its garbage once
// (src/core/quiet-memory.ts): only when the heap grew since the last
// collection, only after a quiet stretch, and not more often than its interval.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { MIN_COLLECTION_INTERVAL_MS } from '../../src/core/flood-memory';
import { CHECK_INTERVAL_MS, GROWN_BYTES, QUIET_MS, QUIET_UTILISATION, quietMemory } from '../../src/core/quiet-memory';

const MiB = 1024 * 1024;

/** A process whose heap and event loop the test sets; a collection brings the heap back to `heapAfterCollection`. */
function fakeProcess(): { heap: number; busy: number; heapAfterCollection: number; collections: number; collect: () => void } {
  const state = {
    heap: 20 * MiB,
    busy: 0,
    heapAfterCollection: 20 * MiB,
    collections: 0,
    collect: () => {
      state.collections += 1;
      state.heap = state.heapAfterCollection;
    },
  };
  return state;
}

function withTimers(run: () => void): void {
  mock.timers.enable({ apis: ['setInterval', 'Date'] });
  try {
    run();
  } finally {
    mock.timers.reset();
  }
}

describe('memory after a busy period', () => {
  it('collects once the process is quiet after its heap grew, and only once', () => {
    withTimers(() => {
      const p = fakeProcess();
      const memory = quietMemory(p.collect, { heapBytes: () => p.heap, utilisation: () => p.busy });
      try {
        // Busy, and the heap grows: nothing while the event loop is busy.
        p.busy = 0.9;
        p.heap = 20 * MiB + GROWN_BYTES;
        mock.timers.tick(CHECK_INTERVAL_MS * 10);
        assert.equal(p.collections, 0, 'not while busy');
        // Quiet, but not yet for long enough.
        p.busy = QUIET_UTILISATION / 2;
        mock.timers.tick(QUIET_MS - CHECK_INTERVAL_MS);
        assert.equal(p.collections, 0, 'not before the quiet period has passed');
        mock.timers.tick(CHECK_INTERVAL_MS);
        assert.equal(p.collections, 1, 'once quiet for the period');
        mock.timers.tick(MIN_COLLECTION_INTERVAL_MS * 10);
        assert.equal(p.collections, 1, 'and only once: the heap has not grown since');
      } finally {
        memory.stop();
      }
    });
  });

  it('leaves a heap that grew less than the threshold, and one busy check starts the quiet period again', () => {
    withTimers(() => {
      const p = fakeProcess();
      const memory = quietMemory(p.collect, { heapBytes: () => p.heap, utilisation: () => p.busy });
      try {
        p.heap = 20 * MiB + GROWN_BYTES - 1;
        mock.timers.tick(MIN_COLLECTION_INTERVAL_MS * 4);
        assert.equal(p.collections, 0, 'growth under the threshold is not worth a collection');
        p.busy = QUIET_UTILISATION; // busy at the threshold: not quiet
        p.heap = 20 * MiB + GROWN_BYTES;
        mock.timers.tick(CHECK_INTERVAL_MS);
        p.busy = 0;
        mock.timers.tick(QUIET_MS - CHECK_INTERVAL_MS);
        p.busy = 1; // one busy interval just before the quiet period would have ended
        mock.timers.tick(CHECK_INTERVAL_MS);
        p.busy = 0;
        mock.timers.tick(QUIET_MS - CHECK_INTERVAL_MS);
        assert.equal(p.collections, 0, 'the quiet period counts from the last busy interval');
        mock.timers.tick(CHECK_INTERVAL_MS);
        assert.equal(p.collections, 1);
      } finally {
        memory.stop();
      }
    });
  });

  it('counts growth from what the last collection left, and collects at most once per interval', () => {
    withTimers(() => {
      const p = fakeProcess();
      p.heapAfterCollection = 30 * MiB; // the collection leaves more than the process started with (live data)
      const memory = quietMemory(p.collect, { heapBytes: () => p.heap, utilisation: () => p.busy });
      try {
        p.heap = 20 * MiB + GROWN_BYTES;
        mock.timers.tick(QUIET_MS);
        assert.equal(p.collections, 1);
        // The heap grows again at once, the process quiet: it waits for the interval.
        p.heap = 30 * MiB + GROWN_BYTES;
        mock.timers.tick(MIN_COLLECTION_INTERVAL_MS - CHECK_INTERVAL_MS);
        assert.equal(p.collections, 1, 'not twice within the interval');
        mock.timers.tick(CHECK_INTERVAL_MS);
        assert.equal(p.collections, 2, 'grown over what the last collection left');
        mock.timers.tick(MIN_COLLECTION_INTERVAL_MS * 4);
        assert.equal(p.collections, 2, 'a heap that stays where the collection left it is left alone');
      } finally {
        memory.stop();
      }
    });
  });
});
