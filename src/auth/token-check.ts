import { Metadata } from '@grpc/grpc-js';
import { isServiceError } from '../etcd/errors';
import type { Logger } from '../log';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import { ROOT_ROLE, type KeyPermission, type PermissionType } from './permissions';

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

interface WireRole {
  perm?: { permType?: PermissionType; key?: Buffer; range_end?: Buffer }[];
}

/** The user's roles and their key permissions, read with the user's own token (etcd lets a user read itself and its roles). */
export async function readPermissions(pool: UpstreamPool, user: string, token: string, log: Logger): Promise<PermissionsRead> {
  for (const member of pool.candidates()) {
    try {
      const options = { deadlineMs: CALL_TIMEOUT_MS, metadata: withToken(token), reason: 'auth-directory' as const };
      const got = await callUpstream<{ roles?: string[] }>(member.client, 'etcdserverpb.Auth', 'UserGet', { name: user }, options);
      const roles = got.roles ?? [];
      const permissions: KeyPermission[] = [];
      for (const role of roles) {
        if (role === ROOT_ROLE) continue;
        const answer = await callUpstream<WireRole>(member.client, 'etcdserverpb.Auth', 'RoleGet', { role }, { ...options, metadata: withToken(token) });
        for (const perm of answer.perm ?? []) permissions.push({ key: perm.key ?? Buffer.alloc(0), rangeEnd: perm.range_end ?? Buffer.alloc(0), type: perm.permType ?? 'READ' });
      }
      return { kind: 'ok', permissions, root: roles.includes(ROOT_ROLE) };
    } catch (error) {
      const details = detailsOf(error);
      if (details === INVALID_TOKEN || details === OLD_AUTH_REVISION) return { kind: 'invalid' };
      if (details === USER_NOT_FOUND) return { kind: 'userGone' };
      log.debug({ member: member.endpoint.url, err: details }, "could not read a user's permissions");
    }
  }
  return { kind: 'unknown' };
}
