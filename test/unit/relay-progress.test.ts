// Unit (no network): a relay stream's progress requests to etcd. One request in flight at a time, a
// new one no sooner than 50 ms after the last (100 ms for an older etcd), one taken as lost after 5 s;
// an answer speaks for the watches created before the oldest request still unanswered; an older etcd's
// answer counts only once a later one came at least 100 ms after it with no event in between.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { progressTrustFor } from '../../src/mirror/watch-stream';
import { StreamProgress } from '../../src/watch/relay-progress';

const reliable = (): StreamProgress => new StreamProgress(progressTrustFor('3.5.16'));
const older = (): StreamProgress => new StreamProgress(progressTrustFor('3.4.23'));

describe('a relay stream asking etcd for progress', () => {
  it('keeps one request in flight, and spaces them', () => {
    const progress = reliable();
    assert.equal(progress.ask(3, 1_000), true);
    assert.equal(progress.ask(4, 1_010), false, 'one in flight already');
    assert.equal(progress.ask(4, 5_999), false, 'still in flight before 5 s');
    assert.deepEqual(progress.answered(20, 1_020), { revision: 20, covers: 3, at: 1_020, askedAt: 1_000, quiet: false, eventsSeen: 0 });
    assert.equal(progress.ask(4, 1_030), false, 'within 50 ms of the last');
    assert.equal(progress.ask(4, 1_050), true);
  });

  it('believes no answer it did not ask for', () => {
    const progress = reliable();
    assert.equal(progress.answered(20, 1_000), null);
    progress.ask(1, 1_000);
    assert.notEqual(progress.answered(21, 1_010), null);
    assert.equal(progress.answered(22, 1_020), null, 'a second answer to one request');
  });

  it('asks again after 5 s without an answer, and takes the next answer for the older request', () => {
    const progress = reliable();
    assert.equal(progress.ask(2, 0), true);
    assert.equal(progress.ask(5, 5_000), true, 'the first is taken as lost');
    const fact = progress.answered(30, 5_010);
    assert.equal(fact?.covers, 2, 'the fewest watches: etcd may have answered both requests with one message');
    assert.equal(fact?.askedAt, 0);
  });

  it("counts an older etcd's answer only once a later one came 100 ms after it with no event between", () => {
    const progress = older();
    progress.ask(1, 0);
    assert.equal(progress.answered(10, 10), null, 'a first answer is a candidate');
    progress.ask(1, 100);
    assert.equal(progress.answered(11, 60), null, 'less than 100 ms later');
    progress.ask(1, 200);
    assert.deepEqual(progress.answered(12, 210), { revision: 10, covers: 1, at: 10, askedAt: 0, quiet: true, eventsSeen: 0 });
    progress.events();
    progress.ask(1, 300);
    assert.equal(progress.answered(13, 400), null, 'an event came after the candidate (12): it may have been overtaken');
    progress.ask(1, 400);
    assert.equal(progress.answered(14, 450), null, 'the candidate is 13 now, received at 400: 50 ms later is too soon');
    progress.ask(1, 520);
    assert.equal(progress.answered(15, 530)?.revision, 13);
  });

  it("believes answers as an older etcd's until the member's version says otherwise", () => {
    const progress = new StreamProgress(progressTrustFor(undefined));
    progress.ask(1, 0);
    assert.equal(progress.answered(10, 10), null);
    progress.trusted(progressTrustFor('3.5.13'));
    progress.ask(1, 100);
    assert.equal(progress.answered(11, 110)?.revision, 11);
  });
});
