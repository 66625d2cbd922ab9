import { Metadata } from '@grpc/grpc-js';
import { isServiceError, type EtcdErrorName } from '../etcd/errors';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import { ReadPermissions, ROOT_ROLE, type KeyPermission, type PermissionType } from './permissions';

/** Tokens remembered at most; the oldest go first (a client logging in again gets a new one). */
const MAX_TOKENS = 10_000;
const FETCH_TIMEOUT_MS = 5_000;
const INVALID_TOKEN = 'etcdserver: invalid auth token';

/** How one read (every key range it names) is answered when etcd has auth on. */
export type ReadDecision =
  | { readonly kind: 'permit' }
  /** etcd would refuse it: with etcd's own error. */
  | { readonly kind: 'refuse'; readonly error: EtcdErrorName }
  /** The proxy cannot tell who is asking (a token it did not see issued): etcd decides. */
  | { readonly kind: 'forward' };

export interface KeyRangeAsked {
  readonly key: Buffer;
  /** Empty: the key alone; "\0": every key from `key` on. */
  readonly rangeEnd: Buffer;
}

interface UserEntry {
  permissions: ReadPermissions | null;
  fetchedAt: number;
  /** A fetch under way, which every read of the user waits for. */
  fetching: Promise<ReadPermissions | null> | null;
}

interface WireRole {
  perm?: { permType?: PermissionType; key?: Buffer; range_end?: Buffer }[];
}

/** The token a call carries, where etcd looks for it: gRPC's `token`, or the JSON gateway's `Authorization`. */
export function tokenOf(metadata: Metadata): string | undefined {
  const value = metadata.get('token')[0] ?? metadata.get('authorization')[0];
  return value === undefined ? undefined : String(value);
}

/**
 * Who is asking, and what they may read. The proxy learns a token's user only
 * from the logins that pass through it; what the user may read it asks etcd
 * with that user's own token (etcd lets users read themselves and their
 * roles), and asks again once `refreshIntervalMs` has passed since, so that
 * a revoked permission, a deleted user or a changed password takes effect
 * within it, at a cost to etcd of a few calls per active user per interval.
 */
export class AuthDirectory {
  private readonly userOfToken = new Map<string, string>();
  private readonly users = new Map<string, UserEntry>();

  constructor(
    private readonly pool: UpstreamPool,
    private readonly refreshIntervalMs: number,
    private readonly log: Logger,
    /** While true, etcd cannot be asked: what is known serves as it is. */
    private readonly upstreamLost: () => boolean,
    private readonly metrics: Pick<Metrics, 'authDecisions' | 'authUsers' | 'authPermissionReads'>,
  ) {}

  /** A login passed through: `token` is `user`'s. */
  learn(user: string, token: string): void {
    this.userOfToken.delete(token);
    this.userOfToken.set(token, user);
    if (this.userOfToken.size > MAX_TOKENS) {
      const oldest = this.userOfToken.keys().next();
      if (oldest.done !== true) this.userOfToken.delete(oldest.value);
    }
  }

  /** etcd no longer takes `token` (expired, or its user changed): the proxy forgets it too. */
  forget(token: string): void {
    this.userOfToken.delete(token);
  }

  /** Decides a read of `ranges` by the caller whose metadata is given, as etcd's auth store would. */
  async decide(metadata: Metadata, ranges: readonly KeyRangeAsked[]): Promise<ReadDecision> {
    const decision = await this.decideOnce(metadata, ranges);
    this.metrics.authDecisions.inc({ result: decision.kind });
    return decision;
  }

  private async decideOnce(metadata: Metadata, ranges: readonly KeyRangeAsked[]): Promise<ReadDecision> {
    const token = tokenOf(metadata);
    if (token === undefined || token === '') return { kind: 'refuse', error: 'userEmpty' };
    const user = this.userOfToken.get(token);
    if (user === undefined) return this.upstreamLost() ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
    const permissions = await this.permissionsOf(user, token);
    if (permissions === null) return this.upstreamLost() ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
    return ranges.every((range) => permissions.permits(range.key, range.rangeEnd)) ? { kind: 'permit' } : { kind: 'refuse', error: 'permissionDenied' };
  }

  private async permissionsOf(user: string, token: string): Promise<ReadPermissions | null> {
    let entry = this.users.get(user);
    if (entry === undefined) {
      entry = { permissions: null, fetchedAt: 0, fetching: null };
      this.users.set(user, entry);
      this.metrics.authUsers.set(this.users.size);
    }
    const fresh = entry.permissions !== null && Date.now() - entry.fetchedAt < this.refreshIntervalMs;
    if (fresh || (entry.permissions !== null && this.upstreamLost())) return entry.permissions;
    const current = entry;
    current.fetching ??= this.fetch(user, token)
      .then((permissions) => {
        if (permissions !== null) {
          current.permissions = permissions;
          current.fetchedAt = Date.now();
        }
        return permissions ?? current.permissions;
      })
      .finally(() => {
        current.fetching = null;
      });
    return current.fetching;
  }

  /** The user's roles and their key permissions, read with the user's own token; null when etcd cannot say. */
  private async fetch(user: string, token: string): Promise<ReadPermissions | null> {
    const metadata = (): Metadata => {
      const m = new Metadata();
      m.set('token', token);
      return m;
    };
    let refusals = 0;
    const members = this.pool.candidates();
    for (const member of members) {
      try {
        const got = await callUpstream<{ roles?: string[] }>(member.client, 'etcdserverpb.Auth', 'UserGet', { name: user }, { deadlineMs: FETCH_TIMEOUT_MS, metadata: metadata() });
        const roles = got.roles ?? [];
        const permissions: KeyPermission[] = [];
        for (const role of roles) {
          if (role === ROOT_ROLE) continue;
          const answer = await callUpstream<WireRole>(member.client, 'etcdserverpb.Auth', 'RoleGet', { role }, { deadlineMs: FETCH_TIMEOUT_MS, metadata: metadata() });
          for (const perm of answer.perm ?? []) {
            permissions.push({ key: perm.key ?? Buffer.alloc(0), rangeEnd: perm.range_end ?? Buffer.alloc(0), type: perm.permType ?? 'READ' });
          }
        }
        this.metrics.authPermissionReads.inc({ result: 'ok' });
        return new ReadPermissions(permissions, roles.includes(ROOT_ROLE));
      } catch (error) {
        this.metrics.authPermissionReads.inc({ result: 'error' });
        // Simple tokens are good only at the member that issued them: another member may know it.
        if (isServiceError(error) && error.details === INVALID_TOKEN) {
          refusals += 1;
          continue;
        }
        this.log.debug({ user, member: member.endpoint.url, err: error instanceof Error ? error.message : String(error) }, "could not read a user's permissions");
      }
    }
    // No member takes the token any more: its user's next login teaches the proxy the new one.
    if (refusals > 0 && refusals === members.length) this.forget(token);
    return null;
  }
}
