import type { Client, Metadata } from '@grpc/grpc-js';
import { callUpstream } from '../upstream/unary';
import type { UpstreamReason } from '../upstream/call-reason';
import { ReadPermissions, ROOT_ROLE, type KeyPermission, type PermissionType } from './permissions';

interface WireRole {
  perm?: { permType?: PermissionType; key?: Buffer; range_end?: Buffer }[];
}

/** A user's key permissions, as its roles grant them, and whether it has the root role. */
export interface UserGrants {
  readonly permissions: KeyPermission[];
  readonly root: boolean;
}

/**
 * A user's roles and key permissions from one member, read with that user's
 * own token (etcd lets a user read itself and its roles): one UserGet, and
 * one RoleGet per role other than root. etcd's errors are thrown as they come.
 */
export async function readUserGrants(client: Client, user: string, metadata: () => Metadata, deadlineMs: number, reason: UpstreamReason): Promise<UserGrants> {
  const got = await callUpstream<{ roles?: string[] }>(client, 'etcdserverpb.Auth', 'UserGet', { name: user }, { deadlineMs, metadata: metadata(), reason });
  const roles = got.roles ?? [];
  const permissions: KeyPermission[] = [];
  for (const role of roles) {
    if (role === ROOT_ROLE) continue;
    const answer = await callUpstream<WireRole>(client, 'etcdserverpb.Auth', 'RoleGet', { role }, { deadlineMs, metadata: metadata(), reason });
    for (const perm of answer.perm ?? []) permissions.push({ key: perm.key ?? Buffer.alloc(0), rangeEnd: perm.range_end ?? Buffer.alloc(0), type: perm.permType ?? 'READ' });
  }
  return { permissions, root: roles.includes(ROOT_ROLE) };
}

/** What readUserGrants finds, as etcd's auth store decides reads with it. */
export async function readUserPermissions(client: Client, user: string, metadata: () => Metadata, deadlineMs: number, reason: UpstreamReason): Promise<ReadPermissions> {
  const grants = await readUserGrants(client, user, metadata, deadlineMs, reason);
  return new ReadPermissions(grants.permissions, grants.root);
}
