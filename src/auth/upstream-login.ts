import { Metadata } from '@grpc/grpc-js';
import type { UpstreamUser } from '../settings/types';
import { isServiceError } from '../etcd/errors';
import type { Logger } from '../log';
import type { UpstreamMember } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';

const LOGIN_TIMEOUT_MS = 5_000;
/** etcd's answers to a token it no longer takes, or to a call without one once auth is on: log in again. */
const LOG_IN_AGAIN = new Set(['etcdserver: invalid auth token', 'etcdserver: revision of auth store is old', 'etcdserver: user name is empty']);

/**
 * Who the proxy's own calls (the mirror's list and watch, read barriers,
 * compaction checks, health) are made as when etcd has auth on: `--user`.
 * etcd's default "simple" tokens are good only at the member that issued
 * them, so the proxy logs in at each member it calls, once, and again when a
 * member says its token is stale. Calls a client makes never carry this
 * token: they go upstream with the client's own.
 */
export class UpstreamLogin {
  /** The token held at each member; '' where etcd had auth off at the last login. */
  private readonly tokens = new WeakMap<UpstreamMember, string>();
  private readonly logins = new WeakMap<UpstreamMember, Promise<void>>();

  constructor(
    private readonly user: UpstreamUser | null,
    private readonly log: Logger,
    /** Told what a login found: auth on (the login succeeded) or off (etcd refused it as not enabled). */
    private readonly onAuthState: (enabled: boolean) => void = () => undefined,
  ) {}

  get configured(): boolean {
    return this.user !== null;
  }

  /** The user's name (--user), or null. */
  get userName(): string | null {
    return this.user?.name ?? null;
  }

  /** Logged in at `member` with auth on there: the proxy's calls carry a token. */
  hasTokenAt(member: UpstreamMember): boolean {
    const token = this.tokens.get(member);
    return token !== undefined && token !== '';
  }

  /** Metadata for a call of the proxy's own to `member`: its token there, once logged in. */
  metadataFor(member: UpstreamMember): Metadata {
    const metadata = new Metadata();
    const token = this.tokens.get(member);
    if (token !== undefined && token !== '') metadata.set('token', token);
    return metadata;
  }

  /**
   * Logs in at `member` if a user is configured and no token is held there.
   * A failed login is thrown: the caller's own retry tries again.
   */
  async readyAt(member: UpstreamMember): Promise<void> {
    if (this.user === null || this.tokens.has(member)) return;
    let login = this.logins.get(member);
    if (login === undefined) {
      login = this.login(member, this.user).finally(() => this.logins.delete(member));
      this.logins.set(member, login);
    }
    await login;
  }

  /**
   * A call of the proxy's own failed: if `member` no longer takes its token
   * (etcd restarted, or its auth revision moved), the next call logs in
   * again, and true says so: the refusal was of the token, not of the user.
   */
  observe(member: UpstreamMember, error: unknown): boolean {
    // A gRPC error, or a watch cancelled with etcd's reason: both carry etcd's words in `details`.
    const details = error instanceof Error ? (error as { details?: unknown }).details : undefined;
    if (typeof details !== 'string' || !LOG_IN_AGAIN.has(details) || this.user === null) return false;
    if (this.tokens.delete(member)) this.log.info({ member: member.endpoint.url }, 'upstream token refused; logging in again');
    return true;
  }

  /**
   * `member`'s raft log is at `raftIndex` (its Status says so). etcd's simple
   * tokens name the raft index they were issued at, and etcd holds a call
   * carrying one from a later index until its log gets there: a member
   * restored from a backup would hold every call of the proxy's own until
   * its deadline, for as long as its log is behind. Such a token is dropped
   * and the user logs in again.
   */
  async renewIfIssuedAfter(member: UpstreamMember, raftIndex: number): Promise<void> {
    const issuedAt = simpleTokenIndex(this.tokens.get(member));
    // 0: a Status that did not say (nothing is renewed on a guess: a login costs etcd a password hash).
    if (issuedAt === null || raftIndex <= 0 || issuedAt <= raftIndex) return;
    this.tokens.delete(member);
    this.log.info({ member: member.endpoint.url, tokenIndex: issuedAt, raftIndex }, 'upstream token issued past the member\'s raft log (restored from a backup?); logging in again');
    await this.readyAt(member);
  }

  private async login(member: UpstreamMember, user: UpstreamUser): Promise<void> {
    try {
      const answer = await callUpstream<{ token?: string }>(member.client, 'etcdserverpb.Auth', 'Authenticate', { name: user.name, password: user.password }, { deadlineMs: LOGIN_TIMEOUT_MS, reason: 'login' });
      if (answer.token === undefined || answer.token === '') throw new Error('etcd answered the login without a token');
      this.tokens.set(member, answer.token);
      this.log.info({ member: member.endpoint.url, user: user.name }, 'logged in upstream');
      this.onAuthState(true);
    } catch (error) {
      // etcd with auth off refuses a login: calls go without a token until one is refused for want of it.
      if (isServiceError(error) && error.details === 'etcdserver: authentication is not enabled') {
        this.tokens.set(member, '');
        this.onAuthState(false);
        return;
      }
      throw error;
    }
  }
}

/** The raft index an etcd simple token names ("<random letters>.<index>"); null for a JWT or anything else. */
export function simpleTokenIndex(token: string | undefined): number | null {
  const match = token === undefined ? null : /^[A-Za-z]{1,64}\.(\d{1,19})$/.exec(token);
  if (match === null) return null;
  const index = Number(match[1]);
  return Number.isSafeInteger(index) ? index : null;
}
