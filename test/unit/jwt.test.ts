// Unit (no etcd: tokens signed here, as etcd signs them): the JWT check
// believes a token only when its signature verifies with the configured
// public key under an algorithm that key can sign with, it has not expired,
// and it names a user, an auth revision and an expiry. The classic forgeries fail:
// `alg: none`, HS256 "signed" with the public key as the secret, a tampered
// payload, another key.
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign, constants, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { isCurrent, JwtVerifier } from '../../src/auth/jwt';

const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const NOW = 1_800_000_000_000;
const CLAIMS = { username: 'apisix', revision: 7, exp: NOW / 1000 + 300 };

function signed(alg: string, key: KeyObject, claims: object = CLAIMS): string {
  const input = `${part({ alg, typ: 'JWT' })}.${part(claims)}`;
  const data = Buffer.from(input);
  let signature: Buffer;
  if (alg === 'EdDSA') signature = sign(null, data, key);
  else if (alg.startsWith('ES')) signature = sign(`sha${alg.slice(2)}`, data, { key, dsaEncoding: 'ieee-p1363' });
  else if (alg.startsWith('PS')) signature = sign(`sha${alg.slice(2)}`, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  else signature = sign(`sha${alg.slice(2)}`, data, key);
  return `${input}.${signature.toString('base64url')}`;
}

describe('JWT tokens checked with etcd\'s public key', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ed = generateKeyPairSync('ed25519');
  const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString();

  it('accepts what the key signed, with each algorithm family etcd signs with', () => {
    for (const [alg, pair] of [['RS256', rsa], ['RS512', rsa], ['PS256', rsa], ['ES256', ec], ['EdDSA', ed]] as const) {
      const verifier = new JwtVerifier(pem(pair.publicKey));
      assert.deepEqual(verifier.verify(signed(alg, pair.privateKey), NOW), { user: 'apisix', revision: 7, expiresAt: NOW + 300_000, notBefore: 0 }, alg);
    }
  });

  it('refuses alg none, HS256 with the public key as its secret, and an algorithm the key cannot sign with', () => {
    const verifier = new JwtVerifier(pem(rsa.publicKey));
    const none = `${part({ alg: 'none' })}.${part({ ...CLAIMS, username: 'root' })}.`;
    assert.equal(verifier.verify(none, NOW), null);
    const input = `${part({ alg: 'HS256' })}.${part({ ...CLAIMS, username: 'root' })}`;
    const hs = `${input}.${createHmac('sha256', pem(rsa.publicKey)).update(input).digest('base64url')}`;
    assert.equal(verifier.verify(hs, NOW), null);
    assert.equal(new JwtVerifier(pem(ec.publicKey)).verify(signed('RS256', rsa.privateKey), NOW), null);
  });

  it('refuses an expired token, a tampered one, one from another key, and one without its claims', () => {
    const verifier = new JwtVerifier(pem(rsa.publicKey));
    assert.equal(verifier.verify(signed('RS256', rsa.privateKey, { ...CLAIMS, exp: NOW / 1000 - 1 }), NOW), null);
    const [head, , signature] = signed('RS256', rsa.privateKey).split('.');
    assert.equal(verifier.verify(`${head}.${part({ ...CLAIMS, username: 'root' })}.${signature}`, NOW), null);
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    assert.equal(verifier.verify(signed('RS256', other.privateKey), NOW), null);
    assert.equal(verifier.verify(signed('RS256', rsa.privateKey, { revision: 7 }), NOW), null);
    assert.equal(verifier.verify(signed('RS256', rsa.privateKey, { username: 'apisix' }), NOW), null);
  });

  it('refuses a token without exp (etcd always sets one), or not yet good (nbf); its times are checked again on every use', () => {
    const verifier = new JwtVerifier(pem(rsa.publicKey));
    assert.equal(verifier.verify(signed('RS256', rsa.privateKey, { username: 'apisix', revision: 7 }), NOW), null, 'no exp');
    assert.equal(verifier.verify(signed('RS256', rsa.privateKey, { ...CLAIMS, exp: 'later' }), NOW), null, 'exp not a number');
    assert.equal(verifier.verify(signed('RS256', rsa.privateKey, { ...CLAIMS, nbf: NOW / 1000 + 60 }), NOW), null, 'nbf in the future');
    const claims = verifier.verify(signed('RS256', rsa.privateKey, { ...CLAIMS, nbf: NOW / 1000 - 60 }), NOW);
    assert.notEqual(claims, null);
    if (claims === null) return;
    assert.equal(isCurrent(claims, NOW + 299_000), true);
    assert.equal(isCurrent(claims, NOW + 300_000), false, 'past exp: a token seen before is refused on its next use');
  });

  it('refuses malformed and huge tokens without throwing', () => {
    const verifier = new JwtVerifier(pem(rsa.publicKey));
    for (const token of ['', 'a.b', 'a.b.c.d', '%%%.%%%.%%%', `${part({ alg: 'RS256' })}.not-json.x`, `${'a'.repeat(20_000)}.b.c`, 'simple-token.42']) {
      assert.equal(verifier.verify(token, NOW), null, token.slice(0, 40));
    }
  });

  it('will not take a key that signs with a shared secret', () => {
    assert.throws(() => new JwtVerifier('not a key'));
  });
});
