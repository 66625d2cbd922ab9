// Unit (no processes): the primary's list of tokens for the workers
// (--workers). A token a worker found over is never told again, not to a
// worker started later nor when another worker tells it again; the proxy's
// own tokens go when etcd answers; one user's many logins push out no other
// user's token.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SharedToken } from '../../src/auth/directory';
import { SharedTokens } from '../../src/workers/shared-tokens';

const login = (user: string, token: string, learnedAt = 1_000): SharedToken => ({ kind: 'login', user, token, learnedAt });
const tokensOf = (list: SharedTokens): string[] => list.replay().tokens.map((t) => t.token);

describe("the primary's shared tokens", () => {
  it('never replays a forgotten token, and does not take it back from a late teller', () => {
    const list = new SharedTokens();
    assert.equal(list.told(login('apisix', 'a'), false), true);
    assert.equal(list.told(login('apisix', 'b'), false), true);
    list.forget('a');
    assert.deepEqual(tokensOf(list), ['b'], 'a worker started now hears only b');
    assert.equal(list.told(login('apisix', 'a', 900), false), false, 'a worker that learned it before it was forgotten');
    assert.deepEqual(tokensOf(list), ['b']);
  });

  it("drops the proxy's own tokens once etcd answers, and refuses them afterwards", () => {
    const list = new SharedTokens();
    const offline: SharedToken = { kind: 'proxy', user: 'apisix', token: 'etcd-cache-proxy.x', expiresAt: 9_999_999 };
    assert.equal(list.told(offline, true), true);
    list.upstreamBack();
    assert.deepEqual(tokensOf(list), []);
    assert.equal(list.told(offline, true), false, 'told again by a worker that still used it: over');
    assert.equal(list.told({ ...offline, token: 'etcd-cache-proxy.y' }, false), false, 'not during an outage: no proxy token');
  });

  it("keeps another user's token through 10 000 logins of one user, and the highest auth revision", () => {
    const list = new SharedTokens();
    list.told(login('other', 'other-token'), false);
    for (let i = 0; i < 10_000; i += 1) list.told(login('busy', `busy-${i}`), false);
    assert.ok(tokensOf(list).includes('other-token'));
    assert.equal(tokensOf(list).length, 65);
    assert.equal(list.authRevision(5), true);
    assert.equal(list.authRevision(4), false);
    assert.equal(list.replay().authRevisionAtLeast, 5);
  });
});
