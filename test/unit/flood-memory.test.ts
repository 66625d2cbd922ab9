// After a flood of streams has closed, the proxy collects its garbage once
// (src/core/flood-memory.ts): not for a few streams, not while they are still
// closing, and not more often than its interval.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { FLOOD_CLOSED_STREAMS, FLOOD_QUIET_MS, MIN_COLLECTION_INTERVAL_MS, floodMemory } from '../../src/core/flood-memory';

describe('memory after a flood of streams', () => {
  it('collects once the closing has stopped, and only after a flood', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      let collections = 0;
      const memory = floodMemory(() => (collections += 1));
      for (let i = 0; i < FLOOD_CLOSED_STREAMS - 1; i += 1) memory.streamClosed();
      mock.timers.tick(FLOOD_QUIET_MS * 10);
      assert.equal(collections, 0, 'a few closed streams are not worth a collection');
      memory.streamClosed();
      mock.timers.tick(FLOOD_QUIET_MS - 1);
      memory.streamClosed(); // still closing: it waits
      mock.timers.tick(FLOOD_QUIET_MS);
      assert.equal(collections, 0, 'a stream closed in the last quiet period');
      mock.timers.tick(FLOOD_QUIET_MS);
      assert.equal(collections, 1, 'once the streams stopped closing');
      mock.timers.tick(FLOOD_QUIET_MS * 10);
      assert.equal(collections, 1, 'and only once');
    } finally {
      mock.timers.reset();
    }
  });

  it('collects at most once per interval', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      let collections = 0;
      const memory = floodMemory(() => (collections += 1));
      const flood = (): void => {
        for (let i = 0; i < FLOOD_CLOSED_STREAMS; i += 1) memory.streamClosed();
      };
      flood();
      mock.timers.tick(FLOOD_QUIET_MS);
      assert.equal(collections, 1);
      flood();
      mock.timers.tick(FLOOD_QUIET_MS);
      assert.equal(collections, 1, 'a second flood right after waits for the interval');
      mock.timers.tick(MIN_COLLECTION_INTERVAL_MS);
      assert.equal(collections, 2);
    } finally {
      mock.timers.reset();
    }
  });
});
