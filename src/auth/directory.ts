import { randomBytes } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import type { EtcdErrorName } from '../etcd/errors';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { UpstreamPool } from '../upstream/pool';
import { isStorableName, isStorableToken, nameForLog } from './input-limits';
import { isCurrent, type JwtVerifier, type TokenClaims } from './jwt';
import type { OfflineLogins } from './offline-logins';
import { ReadPermissions, type KeyPermission } from './permissions';
import { checkToken, readPermissions, type TokenVerdict } from './token-check';
import { ForgottenTokens, TokenBook } from './token-book';
import { TokenLogCheck } from './token-log-check';

/** Users whose permissions are kept at most; the least recently used goes first. */
const MAX_USERS = 10_000;

/** How one read (every key range it names) is answered when etcd has auth on. */
export type ReadDecision =
  | { readonly kind: 'permit' }
  /** etcd would refuse it: with etcd's own error. */
  | { readonly kind: 'refuse'; readonly error: EtcdErrorName }
  /** The proxy cannot tell who is asking (a token it did not see issued), or etcd could not confirm it lately: etcd decides. */
  | { readonly kind: 'forward' };

export interface KeyRangeAsked {
  readonly key: Buffer;
  /** Empty: the key alone; "\0": every key from `key` on. */
  readonly rangeEnd: Buffer;
}

interface UserEntry {
  permissions: ReadPermissions | null;
  /** A key the user may read (or any key): the one a token of the user is checked with. */
  probeKey: Buffer;
  fetchedAt: number;
  /** A read under way, which every decision for the user waits for. */
  fetching: Promise<ReadPermissions | null> | null;
}

/**
 * Whether etcd takes a token now, as far as the proxy can tell: 'pastLog'
 * is a simple token of a raft log etcd no longer has, which etcd would hold
 * a call with (a watch for good) before it refuses it.
 */
type Confirmation = TokenVerdict | 'pastLog';

/** What the proxy knows of a token etcd issued: whose it is, and when etcd last took it. */
interface TokenRecord {
  readonly user: string;
  /** A JWT's claims (checked on every use), or null for a simple token. */
  readonly claims: TokenClaims | null;
  /** When etcd last took the token (its login's answer, or a check made with it); 0: never yet. */
  confirmedAt: number;
  /** A check under way, which every decision for the token waits for. */
  confirming: Promise<Confirmation> | null;
}

interface ProxyToken {
  readonly user: string;
  /** When the upstream login it rests on is too old (--auth-offline-max-age): the token ends then, used or not. */
  readonly expiresAt: number;
  usedAt: number;
  toldAt: number;
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
export type SharedToken =
  /** etcd's token from a login that passed through, issued at `learnedAt` (ms since the epoch). */
  | { readonly kind: 'login'; readonly user: string; readonly token: string; readonly learnedAt: number }
  /** One this proxy issued during an outage, good until `expiresAt` at most. */
  | { readonly kind: 'proxy'; readonly user: string; readonly token: string; readonly expiresAt: number };

/** Where a serving process tells the others what it learned (--workers); nothing in a single process. */
export interface TokenTeller {
  share(token: SharedToken): void;
  /** etcd no longer takes `token`: every process forgets it. */
  forget(token: string): void;
  /** etcd's auth store has reached at least this revision (JWTs issued before it are refused). */
  authRevision(atLeast: number): void;
}

const NO_TELLER: TokenTeller = { share: () => undefined, forget: () => undefined, authRevision: () => undefined };

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

/** A key the permissions let the user read, for checking its tokens with a read etcd answers; any key when none. */
function probeKeyOf(permissions: readonly KeyPermission[]): Buffer {
  const readable = permissions.find((p) => p.type !== 'WRITE' && p.key.length > 0);
  return readable?.key ?? Buffer.from('\0');
}

/**
 * Who is asking, and what they may read. The proxy learns a token's user
 * only from a login that passes through it, or from a JWT it verifies with
 * etcd's public key. While etcd answers, a token is served from its user's
 * permissions only while etcd took that very token within the refresh
 * interval: each token in use is checked again with a read made with it
 * (in the background from half the interval on, so reads rarely wait), and
 * its user's permissions are read again as often; a check or read that fails
 * leaves the decision to etcd (forward), never to what was known before.
 * A token etcd calls invalid or old is forgotten in every serving process.
 * The cost to etcd is a call per token in use and a few per user in use per
 * interval, whatever the number of requests. While etcd is down, what was
 * last known decides, and JWTs issued before the auth store's last known
 * revision are refused as etcd refuses them.
 */
export class AuthDirectory {
  private readonly tokens = new TokenBook<TokenRecord>();
  private readonly forgotten = new ForgottenTokens();
  private readonly users = new Map<string, UserEntry>();
  /** Tokens this proxy issued during an outage: their user, when they end, and when they were last used. */
  private readonly proxyTokens = new TokenBook<ProxyToken>();
  /** The auth store's revision is at least this: learned from JWTs etcd took or refused as old. */
  private authRevisionAtLeast = 0;
  private teller: TokenTeller = NO_TELLER;
  /** Simple tokens of a log etcd no longer has (restored from a backup), which etcd would hold calls with rather than refuse. */
  private readonly tokenLogs: TokenLogCheck;

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
  ) {
    this.tokenLogs = new TokenLogCheck(pool, log);
  }

  /**
   * What this process learns is told to `teller` from now on (--workers: a
   * client logs in on one connection and reads on another, served by
   * another process).
   */
  tellTo(teller: TokenTeller): void {
    this.teller = teller;
  }

  /** A token another serving process learned: known here as if learned here, unless etcd refused it here since. */
  adopt(shared: SharedToken): void {
    if (!isStorableName(shared.user) || !isStorableToken(shared.token)) return;
    if (shared.kind === 'proxy') {
      // Issued during an outage that is over: it ended then.
      if (!this.upstreamLost() || this.forgotten.since(shared.token) !== undefined) return;
      this.keepProxyToken(shared.token, shared.user, shared.expiresAt);
      return;
    }
    if ((this.forgotten.since(shared.token) ?? -1) >= shared.learnedAt) return;
    this.keepLogin(shared.user, shared.token, shared.learnedAt);
    this.prefetch(shared.user, shared.token);
  }

  /** Another serving process found `token` over. */
  adoptForget(token: string): void {
    this.forgetHere(token);
  }

  /** Another serving process learned that the auth store reached `atLeast`. */
  adoptAuthRevision(atLeast: number): void {
    this.authRevisionAtLeast = Math.max(this.authRevisionAtLeast, atLeast);
  }

  /** etcd answers again: every token the proxy issued during the outage ends (its client logs in with etcd). */
  upstreamBack(): void {
    for (const [token] of this.proxyTokens.entriesNow()) this.forgotten.add(token);
    this.proxyTokens.clear();
  }

  /** The user's permissions now, while etcd answers: an outage may begin before this process is asked to decide. */
  private prefetch(user: string, token: string): void {
    if (!this.upstreamLost()) this.permissionsOf(user, token).catch(() => undefined);
  }

  /** A token of the proxy's own for `user`, after an offline login: good only here, for mirror reads and watches, until `expiresAt` at most. */
  issueProxyToken(user: string, expiresAt: number): string {
    const token = `${PROXY_TOKEN_PREFIX}${randomBytes(24).toString('base64url')}`;
    this.keepProxyToken(token, user, expiresAt);
    this.teller.share({ kind: 'proxy', user, token, expiresAt });
    return token;
  }

  private keepProxyToken(token: string, user: string, expiresAt: number): void {
    const now = Date.now();
    this.proxyTokens.set(token, { user, expiresAt, usedAt: now, toldAt: now });
  }

  /** A login passed through: `token` is `user`'s, etcd issued it just now, and what the user may read is asked at once. */
  learn(user: string, token: string): void {
    // Longer than any name or token the proxy keeps: etcd decides each call that carries it.
    if (!isStorableName(user) || !isStorableToken(token)) return;
    const learnedAt = Date.now();
    // Its first calls need no look at the members' logs: etcd's log reached its index just now.
    this.tokenLogs.issued(token);
    this.keepLogin(user, token, learnedAt);
    this.teller.share({ kind: 'login', user, token, learnedAt });
    this.prefetch(user, token);
  }

  private keepLogin(user: string, token: string, confirmedAt: number): void {
    const claims = this.jwt?.verify(token) ?? null;
    // A JWT names its user: one that names another is no token of this login's.
    if (claims !== null && claims.user !== user) return;
    this.forgotten.delete(token);
    this.tokens.set(token, { user, claims, confirmedAt, confirming: null });
    if (claims !== null) this.raiseAuthRevision(claims.revision, false);
  }

  /** etcd no longer takes `token` (expired, its user changed, or issued before an auth change): every process forgets it. */
  forget(token: string): void {
    if (!isStorableToken(token)) return;
    const known = this.tokens.get(token);
    this.forgetHere(token);
    // Only tokens some process knew are told: a stranger's junk costs the others nothing.
    if (known !== undefined) this.teller.forget(token);
  }

  private forgetHere(token: string): void {
    this.tokens.delete(token);
    this.proxyTokens.delete(token);
    this.forgotten.add(token);
  }

  private raiseAuthRevision(atLeast: number, tell: boolean): void {
    if (atLeast <= this.authRevisionAtLeast) return;
    this.authRevisionAtLeast = atLeast;
    if (tell) this.teller.authRevision(atLeast);
  }

  /**
   * A known token used for a read that etcd answers itself (forwarded):
   * etcd's word on it and its user's permissions are read again in the
   * background when due, as for a read the mirror answers, so that the
   * next outage decides with what etcd said within the refresh interval.
   */
  keepFresh(metadata: Metadata): void {
    if (this.upstreamLost()) return;
    const token = tokenOf(metadata);
    if (token === undefined || !isStorableToken(token) || isProxyIssuedToken(token)) return;
    const record = this.tokens.get(token);
    if (record === undefined) return;
    // Most reads find both fresh: nothing to start (this runs on every forwarded read of mirrored keys).
    const now = Date.now();
    const half = this.refreshIntervalMs / 2;
    if (now - record.confirmedAt < half && now - (this.users.get(record.user)?.fetchedAt ?? 0) < half) return;
    this.confirmed(token, record)
      .then((verdict) => (verdict === 'valid' ? this.permissionsOf(record.user, token) : null))
      .catch(() => undefined);
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
    const lost = this.upstreamLost();
    // Nothing this long was ever kept: etcd decides, or, while it is down, it is no token.
    if (!isStorableToken(token)) return lost ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
    if (isProxyIssuedToken(token)) return this.decideForProxyToken(token, ranges);
    let record = this.tokens.get(token);
    if (record === undefined) {
      const adopted = this.adoptJwt(token);
      if (adopted === null) {
        if (lost) return { kind: 'refuse', error: 'invalidAuthToken' };
        // etcd would hold the forwarded call (a watch for good) before it refuses the token.
        return (await this.tokenLogs.isPastEveryLog(token)) ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
      }
      record = adopted;
    }
    // A JWT's own times, on every use: one that ran out is over whatever else is known.
    if (record.claims !== null && !isCurrent(record.claims)) {
      this.forgetHere(token);
      return lost ? { kind: 'refuse', error: 'invalidAuthToken' } : { kind: 'forward' };
    }
    if (lost) return this.decideDuringOutage(record, ranges);
    const verdict = await this.confirmed(token, record);
    if (verdict === 'pastLog') return { kind: 'refuse', error: 'invalidAuthToken' };
    if (verdict !== 'valid') return { kind: 'forward' };
    const permissions = await this.permissionsOf(record.user, token);
    if (permissions === null) return { kind: 'forward' };
    return decisionBy(permissions, ranges);
  }

  /**
   * A token whose login the proxy did not see, if it is a JWT signed with
   * etcd's key, unexpired, not forgotten and not issued before the auth
   * store's last known revision: kept as its user's, to be checked with etcd
   * like any other (while etcd answers) before it is served.
   */
  private adoptJwt(token: string): TokenRecord | null {
    const claims = this.jwt?.verify(token) ?? null;
    if (claims === null || this.forgotten.since(token) !== undefined || !isStorableName(claims.user)) return null;
    const record: TokenRecord = { user: claims.user, claims, confirmedAt: 0, confirming: null };
    // Every process checks a JWT itself: nothing to tell the others.
    this.tokens.set(token, record);
    return record;
  }

  /** While etcd is down: what was last known of the user, for a token not known to be over. */
  private decideDuringOutage(record: TokenRecord, ranges: readonly KeyRangeAsked[]): ReadDecision {
    if (record.claims !== null && record.claims.revision < this.authRevisionAtLeast) return { kind: 'refuse', error: 'authOldRevision' };
    const permissions = this.lastKnownPermissions(record.user);
    if (permissions === null) return { kind: 'refuse', error: 'invalidAuthToken' };
    return decisionBy(permissions, ranges);
  }

  /**
   * Whether etcd took `token` within the refresh interval, checking it again
   * when not (waited for) or when half the interval has passed (in the
   * background: the answer at hand still holds).
   */
  private async confirmed(token: string, record: TokenRecord): Promise<Confirmation> {
    const age = Date.now() - record.confirmedAt;
    if (age < this.refreshIntervalMs) {
      if (age >= this.refreshIntervalMs / 2) this.confirm(token, record).catch(() => undefined);
      return 'valid';
    }
    return this.confirm(token, record);
  }

  private confirm(token: string, record: TokenRecord): Promise<Confirmation> {
    record.confirming ??= (async () => {
      const startedAt = Date.now();
      const verdict = await this.verdictOn(token, record);
      this.metrics.authPermissionReads.inc({ result: verdict === 'valid' ? 'ok' : 'error' });
      this.settle(token, record, verdict, startedAt);
      return verdict;
    })().finally(() => {
      record.confirming = null;
    });
    return record.confirming;
  }

  /**
   * What etcd says of the token. A simple token past every member's raft
   * log (etcd restored from a backup) is over, though etcd, asked, would
   * hold the check until its deadline: it is not asked then, or, when the
   * log went back since the last look, its check runs into the deadline
   * and the members' logs are looked at again.
   */
  private async verdictOn(token: string, record: TokenRecord): Promise<Confirmation> {
    if (await this.tokenLogs.isPastEveryLog(token)) return 'pastLog';
    const verdict = await checkToken(this.pool, token, this.entryOf(record.user).probeKey, this.log);
    if (verdict === 'unknown' && (await this.tokenLogs.isPastEveryLog(token, true))) return 'pastLog';
    return verdict;
  }

  /** What etcd said of the token: it holds as of when it was asked, or the token is over (everywhere). */
  private settle(token: string, record: TokenRecord, verdict: Confirmation, askedAt: number): void {
    if (verdict === 'valid') {
      record.confirmedAt = Math.max(record.confirmedAt, askedAt);
      // etcd takes a JWT only while its revision is the auth store's.
      if (record.claims !== null) this.raiseAuthRevision(record.claims.revision, true);
      return;
    }
    if (verdict === 'unknown') return;
    // Refused as old: the auth store has moved past the token's revision.
    if (verdict === 'old' && record.claims !== null) this.raiseAuthRevision(record.claims.revision + 1, true);
    this.log.debug({ user: nameForLog(record.user), verdict }, 'etcd no longer takes a token: forgotten');
    this.forget(token);
  }

  private entryOf(user: string): UserEntry {
    let entry = this.users.get(user);
    if (entry === undefined) {
      entry = { permissions: null, probeKey: Buffer.from('\0'), fetchedAt: 0, fetching: null };
      this.users.set(user, entry);
      if (this.users.size > MAX_USERS) {
        const oldest = this.users.keys().next();
        if (oldest.done !== true) this.users.delete(oldest.value);
      }
      this.metrics.authUsers.set(this.users.size);
    }
    return entry;
  }

  /**
   * Whether `token` is a simple token past every member's raft log (etcd
   * restored from a backup), looked at now whatever was seen before: etcd
   * holds a watch created with it rather than refuse it.
   */
  isOfAnotherLog(token: string, fresh = true): Promise<boolean> {
    return this.tokenLogs.isPastEveryLog(token, fresh);
  }

  /** Cheap, for every forwarded call: whether isOfAnotherLog(token, false) would look at the members. */
  mayBeOfAnotherLog(token: string): boolean {
    return this.tokenLogs.mayBePast(token);
  }

  /** etcd held a call carrying `token` until its deadline: what the proxy saw of the members' logs is looked at again. */
  heldWith(token: string): void {
    this.tokenLogs.heldWith(token);
  }

  /** A token this proxy issued: good only while etcd is down, until it ends, for the user's permissions as last known. */
  private async decideForProxyToken(token: string, ranges: readonly KeyRangeAsked[]): Promise<ReadDecision> {
    // etcd answers again: the client gets etcd's answer to a token it never issued, and logs in with etcd.
    if (!this.upstreamLost()) {
      this.upstreamBack();
      return { kind: 'refuse', error: 'invalidAuthToken' };
    }
    const issued = this.proxyTokens.get(token);
    const now = Date.now();
    if (issued === undefined || now - issued.usedAt > PROXY_TOKEN_IDLE_MS || now >= issued.expiresAt) {
      this.proxyTokens.delete(token);
      return { kind: 'refuse', error: 'invalidAuthToken' };
    }
    issued.usedAt = now;
    if (issued.usedAt - issued.toldAt >= PROXY_TOKEN_TELL_MS) {
      issued.toldAt = issued.usedAt;
      this.teller.share({ kind: 'proxy', user: issued.user, token, expiresAt: issued.expiresAt });
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

  /**
   * The user's permissions as etcd gave them within the refresh interval,
   * read again (with `token`) when older; null when that read failed: what
   * was known before does not outlive the interval while etcd answers.
   */
  private async permissionsOf(user: string, token: string): Promise<ReadPermissions | null> {
    const entry = this.entryOf(user);
    const age = Date.now() - entry.fetchedAt;
    if (entry.permissions !== null && age < this.refreshIntervalMs) {
      if (age >= this.refreshIntervalMs / 2) this.refreshPermissions(user, token, entry).catch(() => undefined);
      return entry.permissions;
    }
    return this.refreshPermissions(user, token, entry);
  }

  private refreshPermissions(user: string, token: string, entry: UserEntry): Promise<ReadPermissions | null> {
    entry.fetching ??= (async () => {
      const startedAt = Date.now();
      const read = await readPermissions(this.pool, user, token, this.log);
      this.metrics.authPermissionReads.inc({ result: read.kind === 'ok' ? 'ok' : 'error' });
      if (read.kind === 'ok') {
        const permissions = new ReadPermissions(read.permissions, read.root);
        entry.permissions = permissions;
        entry.probeKey = probeKeyOf(read.permissions);
        entry.fetchedAt = startedAt;
        void this.offline?.rememberPermissions(user, read.permissions, read.root);
        return permissions;
      }
      if (read.kind === 'invalid') this.forget(token);
      if (read.kind === 'userGone') this.userGone(user);
      return null;
    })().finally(() => {
      entry.fetching = null;
    });
    return entry.fetching;
  }

  /** etcd says the user does not exist: its tokens, permissions and offline login go. */
  private userGone(user: string): void {
    for (const token of this.tokens.tokensOf(user)) this.forget(token);
    this.users.delete(user);
    this.metrics.authUsers.set(this.users.size);
    void this.offline?.drop(user, 'etcd says the user does not exist');
  }
}
