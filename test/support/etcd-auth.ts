// Turns etcd's auth on with users and roles a test names, through etcd's own
// Auth service (raw grpc-js), and logs each user in.
import assert from 'node:assert/strict';
import { credentials, loadPackageDefinition, Metadata, type Client } from '@grpc/grpc-js';
import { loadEtcdProto } from './etcd-proto';
import type { PermissionType } from '../../src/auth/permissions';
import { call } from './raw-client';

export interface RolePlan {
  readonly name: string;
  readonly permissions: readonly { readonly key: string; readonly rangeEnd?: string; readonly type: PermissionType }[];
}

export interface UserPlan {
  readonly name: string;
  readonly password: string;
  readonly roles: readonly string[];
}

export const ROOT_PASSWORD = 'root-pw';

/** An Auth service client for `address`. */
export function authClient(address: string): Client {
  const root = loadPackageDefinition(loadEtcdProto()) as unknown as { etcdserverpb: Record<string, new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client> };
  const Auth = root.etcdserverpb.Auth;
  if (Auth === undefined) throw new Error('no Auth in proto/');
  return new Auth(address, credentials.createInsecure());
}

/** Metadata carrying a token as etcd's clients send it. */
export function withToken(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set('token', token);
  return metadata;
}

async function ok(client: Client, method: string, request: object, metadata?: Metadata): Promise<void> {
  const outcome = await call(client, method, request, metadata === undefined ? {} : { metadata });
  assert.equal(outcome.error, null, `${method} ${JSON.stringify(request)}: ${outcome.error?.details}`);
}

/** Logs a user in; the token, or the error etcd gave. */
export async function authenticate(client: Client, name: string, password: string): Promise<string> {
  const outcome = await call<{ token: string }>(client, 'Authenticate', { name, password });
  assert.equal(outcome.error, null, `Authenticate ${name}: ${outcome.error?.details}`);
  return outcome.response?.token ?? '';
}

/** Logs each user in at `address` (etcd, or a proxy, which then knows the tokens): their tokens by name. */
export async function logInAll(address: string, users: readonly { readonly name: string; readonly password: string }[]): Promise<Map<string, string>> {
  const client = authClient(address);
  try {
    const tokens = new Map<string, string>();
    for (const user of users) tokens.set(user.name, await authenticate(client, user.name, user.password));
    return tokens;
  } finally {
    client.close();
  }
}

/**
 * Adds the roles and users (and root, with the root role), then enables auth.
 * Returns each user's token, root's included.
 */
export async function enableAuth(address: string, roles: readonly RolePlan[], users: readonly UserPlan[]): Promise<Map<string, string>> {
  const client = authClient(address);
  try {
    await ok(client, 'UserAdd', { name: 'root', password: ROOT_PASSWORD });
    await ok(client, 'UserGrantRole', { user: 'root', role: 'root' });
    for (const role of roles) {
      await ok(client, 'RoleAdd', { name: role.name });
      for (const permission of role.permissions) {
        await ok(client, 'RoleGrantPermission', {
          name: role.name,
          perm: { permType: permission.type, key: Buffer.from(permission.key), range_end: Buffer.from(permission.rangeEnd ?? '') },
        });
      }
    }
    for (const user of users) {
      await ok(client, 'UserAdd', { name: user.name, password: user.password });
      for (const role of user.roles) await ok(client, 'UserGrantRole', { user: user.name, role });
    }
    await ok(client, 'AuthEnable', {});
    return await logInAll(address, [{ name: 'root', password: ROOT_PASSWORD }, ...users]);
  } finally {
    client.close();
  }
}
