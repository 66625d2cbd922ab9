import { Metadata } from '@grpc/grpc-js';
import { isServiceError } from '../etcd/errors';
import type { Logger } from '../log';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import type { KeyPermission } from './permissions';
import { readUserGrants } from './user-permissions';

const CALL_TIMEOUT_MS = 5_000;
/** etcd's answers that say a token is over: unknown to the member (simple tokens, expired JWTs) or issued before the auth store last changed. */
export const INVALID_TOKEN = 'etcdserver: invalid auth token';
export const OLD_AUTH_REVISION = 'etcdserver: revision of auth store is old';
const USER_NOT_FOUND = 'etcdserver: user name not found';
const PERMISSION_DENIED = 'etcdserver: permission denied';

/** What etcd said of a token: taken (as of the call), over, issued before the auth store's revision, or nothing (no member answered). */
export type TokenVerdict = 'valid' | 'invalid' | 'old' | 'unknown';

function withToken(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set('token', token);
  return metadata;
}

function detailsOf(error: unknown): string {
  return isServiceError(error) ? error.details : error instanceof Error ? error.message : String(error);
}

/**
 * Has etcd check `token` as it checks a client's read: a serializable,
 * count-only Range of one key, made with the token. etcd then checks the
 * token itself (known to the member, unexpired) and, for a JWT, that its
 * auth revision is still the auth store's ("revision of auth store is old"
 * otherwise), before it looks at permissions: an answer, or "permission
 * denied", says the token is good now. (UserGet would not do: etcd lets a
 * user read itself without the revision check.) The first member that says
 * anything about the token decides; a member that cannot answer passes to
 * the next.
 */
export async function checkToken(pool: UpstreamPool, token: string, probeKey: Buffer, log: Logger): Promise<TokenVerdict> {
  for (const member of pool.candidates()) {
    try {
      await callUpstream(member.client, 'etcdserverpb.KV', 'Range', { key: probeKey, serializable: true, count_only: true }, { deadlineMs: CALL_TIMEOUT_MS, metadata: withToken(token), reason: 'auth-directory' });
      return 'valid';
    } catch (error) {
      const details = detailsOf(error);
      if (details === PERMISSION_DENIED) return 'valid';
      if (details === INVALID_TOKEN) return 'invalid';
      if (details === OLD_AUTH_REVISION) return 'old';
      log.debug({ member: member.endpoint.url, err: details }, 'could not check a token');
    }
  }
  return 'unknown';
}

export type PermissionsRead =
  | { readonly kind: 'ok'; readonly permissions: KeyPermission[]; readonly root: boolean }
  /** The token is over (etcd said so of it). */
  | { readonly kind: 'invalid' }
  /** etcd says there is no such user. */
  | { readonly kind: 'userGone' }
  | { readonly kind: 'unknown' };

/** The user's roles and their key permissions, read with the user's own token (etcd lets a user read itself and its roles). */
export async function readPermissions(pool: UpstreamPool, user: string, token: string, log: Logger): Promise<PermissionsRead> {
  for (const member of pool.candidates()) {
    try {
      const grants = await readUserGrants(member.client, user, () => withToken(token), CALL_TIMEOUT_MS, 'auth-directory');
      return { kind: 'ok', permissions: grants.permissions, root: grants.root };
    } catch (error) {
      const details = detailsOf(error);
      if (details === INVALID_TOKEN || details === OLD_AUTH_REVISION) return { kind: 'invalid' };
      if (details === USER_NOT_FOUND) return { kind: 'userGone' };
      log.debug({ member: member.endpoint.url, err: details }, "could not read a user's permissions");
    }
  }
  return { kind: 'unknown' };
}
