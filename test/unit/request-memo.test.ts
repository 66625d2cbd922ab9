// Unit (no network): requests decoded once per distinct bytes, bounded, and bad bytes left to etcd.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestMemo, type DecodedRead } from '../../src/core/request-memo';

function memo(counter: { decoded: number }): RequestMemo<string> {
  return new RequestMemo<string>((bytes, id): DecodedRead<string> => {
    counter.decoded += 1;
    if (bytes[0] === 0xff) throw new Error('not a request');
    return { request: bytes.toString(), id, read: true, refusal: null, revision: 0, serializable: true };
  });
}

describe('RequestMemo', () => {
  it('decodes each distinct request once and keys it by its bytes', () => {
    const counter = { decoded: 0 };
    const requests = memo(counter);
    const first = requests.get(Buffer.from('range a'));
    assert.equal(first?.request, 'range a');
    assert.equal(first?.id, Buffer.from('range a').toString('latin1'));
    assert.equal(requests.get(Buffer.from('range a')), first, 'the same object, shared');
    requests.get(Buffer.from('range b'));
    assert.equal(counter.decoded, 2);
  });

  it('answers undefined for bytes that are no request, and decodes large requests every time', () => {
    const counter = { decoded: 0 };
    const requests = memo(counter);
    assert.equal(requests.get(Buffer.from([0xff, 1])), undefined);
    const large = Buffer.alloc(2048, 0x61);
    requests.get(large);
    requests.get(large);
    assert.equal(counter.decoded, 3);
  });

  it('keeps a bounded number of requests, dropping the oldest', () => {
    const counter = { decoded: 0 };
    const requests = memo(counter);
    for (let i = 0; i < 5000; i += 1) requests.get(Buffer.from(`r${i}`));
    requests.get(Buffer.from('r4999'));
    assert.equal(counter.decoded, 5000, 'a recent one is still kept');
    requests.get(Buffer.from('r0'));
    assert.equal(counter.decoded, 5001, 'the oldest was dropped');
  });
});
