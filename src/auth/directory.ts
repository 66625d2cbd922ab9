import { randomBytes } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import { isServiceError, type EtcdErrorName } from '../etcd/errors';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';
import type { JwtVerifier } from './jwt';
import type { OfflineLogins } from './offline-logins';
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

/** Tokens the proxy issues itself during an outage (--auth-offline-login) start so: never sent upstream. */
const PROXY_TOKEN_PREFIX = 'etcd-cache-proxy.';
/** A proxy-issued token unused this long is gone, as etcd's simple tokens go after 5 min. */
const PROXY_TOKEN_IDLE_MS = 5 * 60_000;
/**
 * Each serving process (--workers) keeps its own idle clock for the proxy's
 * tokens: one in use here is told to the others this often, so a client
 * whose next connection lands on another process is not refused as idle.
 */
const PROXY_TOKEN_TELL_MS = 60_000;

/** A token whose user this process learned, told to the other serving processes (--workers). */
export interface SharedToken {
  /** `login`: etcd's token from a login that passed through; `proxy`: one this proxy issued during an outage. */
  readonly kind: 'login' | 'proxy';
  readonly user: string;
  readonly token: string;
}

export function isProxyIssuedToken(token: string): boolean {
  return token.startsWith(PROXY_TOKEN_PREFIX);
}

/** Every range permitted, or etcd's refusal. */
function decisionBy(permissions: ReadPermissions, ranges: readonly KeyRangeAsked[]): ReadDecision {
  return ranges.every((range) => permissions.permits(range.key, range.rangeEnd)) ? { kind: 'permit' } : { kind: 'refuse', error: 'permissionDenied' };
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
  /** Tokens this proxy issued during an outage: their user, and when they were last used. */
  private readonly proxyTokens = new Map<string, { user: string; usedAt: number; toldAt: number }>();
  private share: (token: SharedToken) => void = () => undefined;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly refreshIntervalMs: number,
    private readonly log: Logger,
    /** While true, etcd cannot be asked: what is known serves as it is. */
    private readonly upstreamLost: () => boolean,
    private readonly metrics: Pick<Metrics, 'authDecisions' | 'authUsers' | 'authPermissionReads'>,
    /** Where logins answered during an outage are checked, and permissions kept for them; null: none. */
    private readonly offline: OfflineLogins | null = null,
    /** etcd's JWT tokens, checked with its public key (--auth-jwt-pub-key); null: only logins seen tell. */
    private readonly jwt: JwtVerifier | null = null,
  ) {}

  /**
   * Tokens learned here are told to `share` from now on (--workers: a client
   * logs in on one connection and reads on another, served by another process).
   */
  shareWith(share: (token: SharedToken) => void): void {
    this.share = share;
  }

  /** A token another serving process learned: known here as if learned here. */
  adopt(shared: SharedToken): void {
    if (shared.kind === 'proxy') {
      this.keepProxyToken(shared.token, shared.user);
      return;
    }
    this.keepLogin(shared.user, shared.token);
    this.prefetch(shared.user, shared.token);
  }

  /** The user's permissions now, while etcd answers: an outage may begin before this process is asked to decide. */
  private prefetch(user: string, token: string): void {
    if (!this.upstreamLost()) this.permissionsOf(user, token).catch(() => undefined);
  }

  /** A token of the proxy's own for `user`, after an offline login: good only here, for mirror reads and watches. */
  issueProxyToken(user: string): string {
    const token = `${PROXY_TOKEN_PREFIX}${randomBytes(24).toString('base64url')}`;
    this.keepProxyToken(token, user);
    this.share({ kind: 'proxy', user, token });
    return token;
  }

  private keepProxyToken(token: string, user: string): void {
    this.proxyTokens.delete(token);
    this.proxyTokens.set(token, { user, usedAt: Date.now(), toldAt: Date.now() });
    if (this.proxyTokens.size > MAX_TOKENS) {
      const oldest = this.proxyTokens.keys().next();
      if (oldest.done !== true) this.proxyTokens.delete(oldest.value);
    }
  }

  /** A login passed through: `token` is `user`'s, and what the user may read is asked at once. */
  learn(user: string, token: string): void {
    this.keepLogin(user, token);
    this.share({ kind: 'login', user, token });
    this.prefetch(user, token);
  }

  private keepLogin(user: string, token: string): void {
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
    if (isProxyIssuedToken(token)) return this.decideForProxyToken(token, ranges);
    const user = this.userOfToken.get(token);
    if (user === undefined) return this.decideForUnseenToken(token, ranges);
    const permissions = await this.permissionsOf(user, token);
    if (permissions === null) return this.upstreamLost() ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
    return decisionBy(permissions, ranges);
  }

  /**
   * A token whose login the proxy did not see: etcd decides, unless it is a
   * JWT signed with etcd's key. Then, while etcd answers, the token is tried
   * once by reading the user's permissions with it (which also has etcd say
   * whether its auth revision is still current); while etcd is down, the
   * user's last known permissions decide.
   */
  private async decideForUnseenToken(token: string, ranges: readonly KeyRangeAsked[]): Promise<ReadDecision> {
    const claims = this.jwt?.verify(token) ?? null;
    if (claims === null) return this.upstreamLost() ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
    let permissions: ReadPermissions | null;
    if (this.upstreamLost()) {
      permissions = this.lastKnownPermissions(claims.user);
      if (permissions === null) return { kind: 'refuse', error: 'invalidAuthToken' };
    } else {
      const fetched = await this.fetch(claims.user, token);
      if (fetched === null) return { kind: 'forward' };
      // Every process checks a JWT itself: nothing to tell the others.
      this.keepLogin(claims.user, token);
      this.remember(claims.user, fetched);
      permissions = fetched;
    }
    return decisionBy(permissions, ranges);
  }

  private entryOf(user: string): UserEntry {
    let entry = this.users.get(user);
    if (entry === undefined) {
      entry = { permissions: null, fetchedAt: 0, fetching: null };
      this.users.set(user, entry);
      this.metrics.authUsers.set(this.users.size);
    }
    return entry;
  }

  private remember(user: string, permissions: ReadPermissions): void {
    const entry = this.entryOf(user);
    entry.permissions = permissions;
    entry.fetchedAt = Date.now();
  }

  /** A token this proxy issued: the user's permissions as last known, never asked of etcd with it. */
  private async decideForProxyToken(token: string, ranges: readonly KeyRangeAsked[]): Promise<ReadDecision> {
    const issued = this.proxyTokens.get(token);
    if (issued === undefined || Date.now() - issued.usedAt > PROXY_TOKEN_IDLE_MS) {
      this.proxyTokens.delete(token);
      return { kind: 'refuse', error: 'invalidAuthToken' };
    }
    issued.usedAt = Date.now();
    if (issued.usedAt - issued.toldAt >= PROXY_TOKEN_TELL_MS) {
      issued.toldAt = issued.usedAt;
      this.share({ kind: 'proxy', user: issued.user, token });
    }
    // Issued by another serving process (--workers): the permissions it kept are in the shared file.
    if (this.lastKnownPermissions(issued.user) === null) await this.offline?.reload();
    const known = this.lastKnownPermissions(issued.user);
    if (known === null) return { kind: 'refuse', error: 'permissionDenied' };
    return decisionBy(known, ranges);
  }

  /** What the user could read when last asked: in memory, or kept with its offline login. */
  private lastKnownPermissions(user: string): ReadPermissions | null {
    return this.users.get(user)?.permissions ?? this.storedPermissions(user);
  }

  private storedPermissions(user: string): ReadPermissions | null {
    const stored = this.offline?.permissionsOf(user) ?? null;
    return stored === null ? null : new ReadPermissions(stored.permissions, stored.root);
  }

  private async permissionsOf(user: string, token: string): Promise<ReadPermissions | null> {
    const entry = this.entryOf(user);
    const lost = this.upstreamLost();
    // While etcd is down, what is known serves as it is.
    if (entry.permissions !== null && (lost || Date.now() - entry.fetchedAt < this.refreshIntervalMs)) return entry.permissions;
    if (lost) return this.storedPermissions(user);
    entry.fetching ??= this.fetch(user, token)
      .then((permissions) => {
        if (permissions !== null) this.remember(user, permissions);
        return permissions ?? entry.permissions;
      })
      .finally(() => {
        entry.fetching = null;
      });
    return entry.fetching;
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
        const got = await callUpstream<{ roles?: string[] }>(member.client, 'etcdserverpb.Auth', 'UserGet', { name: user }, { deadlineMs: FETCH_TIMEOUT_MS, metadata: metadata(), reason: 'auth-directory' });
        const roles = got.roles ?? [];
        const permissions: KeyPermission[] = [];
        for (const role of roles) {
          if (role === ROOT_ROLE) continue;
          const answer = await callUpstream<WireRole>(member.client, 'etcdserverpb.Auth', 'RoleGet', { role }, { deadlineMs: FETCH_TIMEOUT_MS, metadata: metadata(), reason: 'auth-directory' });
          for (const perm of answer.perm ?? []) {
            permissions.push({ key: perm.key ?? Buffer.alloc(0), rangeEnd: perm.range_end ?? Buffer.alloc(0), type: perm.permType ?? 'READ' });
          }
        }
        this.metrics.authPermissionReads.inc({ result: 'ok' });
        void this.offline?.rememberPermissions(user, permissions, roles.includes(ROOT_ROLE));
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
