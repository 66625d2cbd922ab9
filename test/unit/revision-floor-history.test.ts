// Unit (no network): what a write's answer tells the proxy about etcd's history. etcd gives a write a
// revision above every one it had made when the write was sent; a lower one than the mirror's means etcd
// was restored from a backup and the mirror holds revisions this etcd never made: until the mirror has been
// listed again, its reads go to etcd (or are marked stale while etcd is lost), as the route says. The
// robustness run found a proxy answering serializable reads from the history the restore took back, unmarked,
// after writes through it had been given lower revisions.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MirrorReadDeps } from '../../src/core/mirror-read-deps';
import { ReadRoutes } from '../../src/core/mirror-read-route';
import type { ReadSpec } from '../../src/core/mirror-read-spec';
import { RevisionFloor } from '../../src/core/revision-floor';
import { encodeHeaderField, encodeResponseHeader } from '../../src/etcd/response-bytes';

const answerAt = (revision: number): Buffer => encodeHeaderField(encodeResponseHeader({ cluster_id: '1', member_id: '2', raft_term: '3' }, revision));

describe('RevisionFloor: a write answered below the mirror (unit)', () => {
  it('takes an ordinary write, and one that wrote nothing (answered at etcd\'s current revision), for the same history', () => {
    const floor = new RevisionFloor();
    floor.noteAnswer(answerAt(101), { handedOut: 100, mirrored: 100 });
    assert.equal(floor.mirrorOfAnotherHistory, false);
    assert.equal(floor.revision, 101);
    floor.noteAnswer(answerAt(101), { handedOut: 101, mirrored: 101 });
    assert.equal(floor.mirrorOfAnotherHistory, false);
  });

  it('takes a write below the mirror for another history, until the mirror is discarded or listed again', () => {
    const floor = new RevisionFloor();
    floor.noteAnswer(answerAt(100));
    floor.noteAnswer(answerAt(50), { handedOut: 100, mirrored: 100 });
    assert.equal(floor.mirrorOfAnotherHistory, true);
    assert.equal(floor.revision, 50, 'the floor follows etcd back');
    floor.mirrorRelisted();
    assert.equal(floor.mirrorOfAnotherHistory, false);
    floor.noteAnswer(answerAt(40), { handedOut: 50, mirrored: 90 });
    assert.equal(floor.mirrorOfAnotherHistory, true);
    floor.reset();
    assert.equal(floor.mirrorOfAnotherHistory, false);
    assert.equal(floor.revision, 0);
  });
});

describe('ReadRoutes with a mirror of another history (unit, fakes)', () => {
  const routes = (floor: RevisionFloor, lost: boolean): ReadRoutes<object> => {
    const deps = {
      mirror: { authRequired: () => false, hasData: () => true },
      liveness: { isLost: () => lost },
      grayscale: { enabled: false },
      ranges: { whole: true },
      store: { meta: () => ({ revision: 100 }) },
      staleReads: 'serve',
      floor,
    } as unknown as MirrorReadDeps;
    return new ReadRoutes(deps, { covered: () => true } as unknown as ReadSpec<object>);
  };
  const serializable = { request: {}, id: 'r', read: true, refusal: null, revision: 0, serializable: true };

  it('sends reads to etcd while etcd answers, and marks them stale while it is lost', () => {
    const floor = new RevisionFloor();
    floor.noteUpstream(100);
    assert.deepEqual(routes(floor, false).now(serializable), { kind: 'mirror', stale: false }, 'the same history: the mirror answers');
    floor.noteAnswer(answerAt(60), { handedOut: 100, mirrored: 100 });
    assert.deepEqual(routes(floor, false).now(serializable), { kind: 'forward' });
    assert.deepEqual(routes(floor, false).now({ ...serializable, revision: 90 }), { kind: 'forward' }, 'a past revision of the other history too');
    assert.deepEqual(routes(floor, true).now(serializable), { kind: 'mirror', stale: true });
  });
});
