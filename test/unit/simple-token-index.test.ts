// Unit (no network): the raft index an etcd simple token names, and nothing read from anything else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simpleTokenIndex } from '../../src/auth/upstream-login';

describe('simpleTokenIndex', () => {
  it('reads the index of etcd\'s "<letters>.<index>" tokens', () => {
    assert.equal(simpleTokenIndex('ZQbSAOuhpQKKbdsg.27'), 27);
    assert.equal(simpleTokenIndex('a.0'), 0);
  });

  it('reads nothing from JWTs, empty or hostile input', () => {
    assert.equal(simpleTokenIndex('eyJhbGciOiJSUzI1NiJ9.eyJ1c2VybmFtZSI6InJvb3QifQ.c2lnbmF0dXJl'), null);
    assert.equal(simpleTokenIndex(undefined), null);
    assert.equal(simpleTokenIndex(''), null);
    assert.equal(simpleTokenIndex('abc.12x'), null);
    assert.equal(simpleTokenIndex(`${'a'.repeat(65)}.1`), null);
    assert.equal(simpleTokenIndex('abc.99999999999999999999'), null);
  });
});
