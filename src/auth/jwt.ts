import { constants, createPublicKey, verify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';

/** The claims of etcd's JWT tokens the proxy uses. */
export interface TokenClaims {
  readonly user: string;
  /** The auth store revision the token was issued at: etcd refuses it once its auth store has moved past. */
  readonly revision: number;
  /** When it expires (ms since the epoch): etcd always sets `exp`, and a token without one is refused. */
  readonly expiresAt: number;
  /** Not good before (ms since the epoch); 0 when the token does not say. */
  readonly notBefore: number;
}

/** Whether the token's own times allow it at `now`: asked on every use, not only when first seen. */
export function isCurrent(claims: TokenClaims, now = Date.now()): boolean {
  return now < claims.expiresAt && now >= claims.notBefore;
}

interface Algorithm {
  /** The digest, or null where the algorithm has its own (EdDSA). */
  readonly hash: string | null;
  readonly options?: Omit<VerifyKeyObjectInput, 'key'>;
}

const RSA: Record<string, Algorithm> = {
  RS256: { hash: 'sha256' },
  RS384: { hash: 'sha384' },
  RS512: { hash: 'sha512' },
  PS256: { hash: 'sha256', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } },
  PS384: { hash: 'sha384', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } },
  PS512: { hash: 'sha512', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } },
};
/** JWS signs with ECDSA as the raw r||s pair, not DER. */
const EC: Record<string, { curve: string; algorithm: Algorithm }> = {
  ES256: { curve: 'prime256v1', algorithm: { hash: 'sha256', options: { dsaEncoding: 'ieee-p1363' } } },
  ES384: { curve: 'secp384r1', algorithm: { hash: 'sha384', options: { dsaEncoding: 'ieee-p1363' } } },
  ES512: { curve: 'secp521r1', algorithm: { hash: 'sha512', options: { dsaEncoding: 'ieee-p1363' } } },
};

/** The algorithms a public key can have signed with: never `none`, never a shared secret (HS*). */
function algorithmsFor(key: KeyObject): Map<string, Algorithm> {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return new Map(Object.entries(RSA));
    case 'rsa-pss':
      return new Map(Object.entries(RSA).filter(([name]) => name.startsWith('PS')));
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return new Map(Object.entries(EC).filter(([, ec]) => ec.curve === curve).map(([name, ec]) => [name, ec.algorithm]));
    }
    case 'ed25519':
    case 'ed448':
      return new Map([['EdDSA', { hash: null }]]);
    default:
      throw new Error(`a ${key.asymmetricKeyType ?? 'symmetric'} key signs no JWT etcd issues with a public key (RS*, PS*, ES*, EdDSA)`);
  }
}

function decodePart(part: string): unknown {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/**
 * Checks etcd's JWT tokens (`--auth-token jwt,...`) with etcd's public key
 * (--auth-jwt-pub-key): the signature, by an algorithm the key can have made
 * (the header's `alg` is only believed within those), the expiry (`exp`,
 * required: etcd always sets it) and `nbf`, and the user and revision
 * claims. A token that fails any check is not the user's.
 */
export class JwtVerifier {
  private readonly key: KeyObject;
  private readonly algorithms: Map<string, Algorithm>;

  constructor(publicKeyPem: string | Buffer) {
    this.key = createPublicKey(publicKeyPem);
    this.algorithms = algorithmsFor(this.key);
  }

  /** The token's claims, or null when it is no valid, unexpired token signed with the key. */
  verify(token: string, now = Date.now()): TokenClaims | null {
    // etcd's JWTs are well under a kilobyte; a huge one is not worth parsing.
    if (token.length > 16_384) return null;
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    const [head, body, signature] = parts as [string, string, string];
    try {
      const header = decodePart(head) as { alg?: unknown };
      const algorithm = typeof header.alg === 'string' ? this.algorithms.get(header.alg) : undefined;
      if (algorithm === undefined) return null;
      const signed = Buffer.from(`${head}.${body}`);
      if (!verify(algorithm.hash, signed, { key: this.key, ...algorithm.options }, Buffer.from(signature, 'base64url'))) return null;
      const claims = decodePart(body) as { username?: unknown; revision?: unknown; exp?: unknown; nbf?: unknown };
      if (typeof claims.username !== 'string' || claims.username === '') return null;
      if (typeof claims.revision !== 'number' || !Number.isSafeInteger(claims.revision)) return null;
      if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return null;
      if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || !Number.isFinite(claims.nbf))) return null;
      const verified: TokenClaims = { user: claims.username, revision: claims.revision, expiresAt: claims.exp * 1000, notBefore: typeof claims.nbf === 'number' ? claims.nbf * 1000 : 0 };
      return isCurrent(verified, now) ? verified : null;
    } catch {
      return null;
    }
  }
}
