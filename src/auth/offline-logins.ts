import { createHmac, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { writeAtomically } from '../files/atomic-file';
import type { Logger } from '../log';
import { isAcceptablePassword, isStorableName, nameForLog } from './input-limits';
import { sourceOf, type LoginAttempt, type LoginBudget } from './login-limits';
import type { KeyPermission, PermissionType } from './permissions';

/** scrypt's cost: about 50 ms of one thread-pool thread per hash, 16 MiB of memory. */
const SCRYPT: ScryptOptions = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;
/** Refusals logged at warn at most this often; the others are counted in the next line. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;
/** A login repeated with the password last hashed only moves its time; that is saved at most this often (older is the safe side). */
const VERIFIED_SAVE_INTERVAL_MS = 60_000;
/** Users whose offline login was dropped, remembered so that another process's copy is not written back. */
const MAX_DROPPED = 10_000;

function scrypt(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCallback(password, salt, KEY_BYTES, SCRYPT, (error, key) => (error === null ? resolve(key) : reject(error))));
}

/** What the file keeps per user: never the password, only a salted scrypt hash of it. */
interface StoredLogin {
  salt: string;
  hash: string;
  /** When a login with this password last succeeded upstream (ms since the epoch). */
  verifiedAt: number;
  /** The user's read permissions as last read from etcd, for serving it while etcd is down. */
  permissions?: { key: string; rangeEnd: string; type: PermissionType }[];
  root?: boolean;
}

export type OfflineVerdict =
  /** The password is the one last used upstream, recently enough: a proxy token may be issued, good until `expiresAt`. */
  | { readonly kind: 'ok'; readonly expiresAt: number }
  | { readonly kind: 'refused' }
  | { readonly kind: 'throttled' };

interface SavedFile {
  users?: Record<string, StoredLogin>;
  /** Users whose offline login was dropped (etcd said the user is gone or the password changed), with when. */
  dropped?: Record<string, number>;
}

/** The file in the data dir. */
export const OFFLINE_LOGINS_FILE = 'offline-logins.json';

/**
 * Logins the proxy may answer itself while etcd is down (--auth-offline-login):
 * a name and password that succeeded upstream within `maxAgeMs`. Kept in the
 * data dir (mode 0600) as a salted, slow hash, with the user's last known read
 * permissions, so that a gateway restarted during an outage (or a proxy
 * restarted during one) can log in and read what it could before. Attempts
 * are reserved in `budget` (per source, per user, overall; shared by every
 * serving process) before the password is hashed. A user's entry is dropped
 * when etcd says the user is gone or the password it rests on no longer works.
 */
export class OfflineLogins {
  private writing: Promise<void> = Promise.resolve();
  /** Users dropped, and when: a copy of theirs verified before that is not taken back from another process. */
  private readonly dropped: Map<string, number>;
  /** Users whose stored password is being compared with one etcd just refused (one comparison each at a time). */
  private readonly comparing = new Set<string>();
  private refusalsLogged = { at: 0, since: 0 };
  /**
   * Per user, a keyed digest of the password this process last hashed, and
   * the hash it stored: the same login again (a gateway logs in often) costs
   * no scrypt, so logins cannot queue the thread pool that offline logins
   * need. The key is random per process; nothing of it is ever written.
   */
  private readonly macKey = randomBytes(32);
  private readonly lastHashed = new Map<string, { mac: Buffer; hash: string }>();
  /** Users whose password is being hashed now, with the newest password that came meanwhile (hashed next). */
  private readonly hashing = new Map<string, string | null>();
  private saveQueued = false;

  private constructor(
    private readonly file: string,
    private readonly maxAgeMs: number,
    private readonly log: Logger,
    private readonly budget: LoginBudget,
    private readonly logins: Map<string, StoredLogin>,
    dropped: Map<string, number>,
  ) {
    this.dropped = dropped;
  }

  static async open(file: string, maxAgeMs: number, log: Logger, budget: LoginBudget): Promise<OfflineLogins> {
    const saved = await readLogins(file, log);
    return new OfflineLogins(file, maxAgeMs, log, budget, saved.logins, saved.dropped);
  }

  /**
   * A login succeeded upstream: its password's hash is kept (a new salt each
   * time the password differs from the one last hashed here). One hash at a
   * time per user; a password that arrives meanwhile is hashed next.
   */
  async remember(name: string, password: string): Promise<void> {
    if (!isStorableName(name) || !isAcceptablePassword(password)) return;
    const mac = this.macOf(password);
    const login = this.logins.get(name);
    const last = this.lastHashed.get(name);
    if (login !== undefined && last !== undefined && last.hash === login.hash && timingSafeEqual(last.mac, mac)) {
      const now = Date.now();
      const saveDue = now - login.verifiedAt >= VERIFIED_SAVE_INTERVAL_MS;
      login.verifiedAt = now;
      if (saveDue) await this.save();
      return;
    }
    if (this.hashing.has(name)) {
      this.hashing.set(name, password);
      return;
    }
    try {
      let next: string | null = password;
      while (next !== null) {
        const current: string = next;
        this.hashing.set(name, null);
        const salt = randomBytes(SALT_BYTES);
        const hash = (await scrypt(current, salt)).toString('base64');
        this.logins.set(name, { ...this.logins.get(name), salt: salt.toString('base64'), hash, verifiedAt: Date.now() });
        this.lastHashed.set(name, { mac: this.macOf(current), hash });
        next = this.hashing.get(name) ?? null;
      }
    } finally {
      this.hashing.delete(name);
    }
    await this.save();
  }

  private macOf(password: string): Buffer {
    return createHmac('sha256', this.macKey).update(password).digest();
  }

  /** The user's read permissions as etcd last gave them. */
  async rememberPermissions(name: string, permissions: readonly KeyPermission[], root: boolean): Promise<void> {
    const login = this.logins.get(name);
    if (login === undefined) return;
    const stored = permissions.map((p) => ({ key: p.key.toString('base64'), rangeEnd: p.rangeEnd.toString('base64'), type: p.type }));
    if (JSON.stringify(login.permissions) === JSON.stringify(stored) && login.root === root) return;
    login.permissions = stored;
    login.root = root;
    await this.save();
  }

  /** The user's last known permissions, if any. */
  permissionsOf(name: string): { permissions: KeyPermission[]; root: boolean } | null {
    const login = this.logins.get(name);
    if (login?.permissions === undefined) return null;
    return {
      permissions: login.permissions.map((p) => ({ key: Buffer.from(p.key, 'base64'), rangeEnd: Buffer.from(p.rangeEnd, 'base64'), type: p.type })),
      root: login.root === true,
    };
  }

  /**
   * During an outage: whether `password` is the one `name` last logged in
   * with upstream, recently enough. `peer` is the client's address: its
   * attempts share one budget. The attempt is reserved before anything is
   * hashed; a name or password longer than any the proxy keeps is refused
   * before that, and never logged whole.
   */
  async verify(name: string, password: string, peer: string | undefined): Promise<OfflineVerdict> {
    if (!isStorableName(name) || !isAcceptablePassword(password)) {
      this.refusal({ user: nameForLog(name), reason: 'name or password longer than the proxy keeps' });
      return { kind: 'refused' };
    }
    // Serving processes (--workers) share the file: a login remembered by another one counts here too.
    await this.reload();
    const attempt: LoginAttempt = { user: name, source: sourceOf(peer), known: this.logins.has(name) };
    const reserved = await this.budget.reserve(attempt);
    if (reserved === null) {
      this.refusal({ user: nameForLog(name), source: attempt.source, reason: 'too many attempts' });
      return { kind: 'throttled' };
    }
    const login = this.logins.get(name);
    // An unknown user costs a hash too, so that timing does not tell which names are known.
    const salt = login === undefined ? randomBytes(SALT_BYTES) : Buffer.from(login.salt, 'base64');
    const hash = await scrypt(password, salt);
    const matches = login !== undefined && timingSafeEqual(hash, Buffer.from(login.hash, 'base64'));
    // Dropped while this attempt was hashing (etcd said the user is gone): not any more.
    const current = this.logins.get(name) === login;
    const expiresAt = login === undefined ? 0 : login.verifiedAt + this.maxAgeMs;
    if (matches && current && Date.now() < expiresAt) {
      this.budget.giveBack(attempt, reserved);
      return { kind: 'ok', expiresAt };
    }
    this.refusal({ user: nameForLog(name), source: attempt.source, reason: login === undefined || !current ? 'unknown user' : matches ? 'last upstream login too old' : 'wrong password' });
    return { kind: 'refused' };
  }

  /** One warn line per interval at most (a burst of junk must not flood the log), counting the ones left out. */
  private refusal(details: Record<string, string>): void {
    const now = Date.now();
    if (now - this.refusalsLogged.at < REFUSAL_LOG_INTERVAL_MS) {
      this.refusalsLogged.since += 1;
      this.log.debug(details, 'offline login refused');
      return;
    }
    this.log.warn({ ...details, refusedSinceLastLine: this.refusalsLogged.since }, 'offline login refused');
    this.refusalsLogged = { at: now, since: 0 };
  }

  /**
   * etcd refused a login for `name` while it answered. If `password` is the
   * one kept for the user, that password no longer works upstream (changed,
   * or the user deleted): the offline login goes. Another password proves
   * nothing (anyone may try one), so nothing changes then.
   */
  async upstreamRefused(name: string, password: string): Promise<void> {
    if (!isStorableName(name) || !isAcceptablePassword(password) || this.comparing.has(name)) return;
    const login = this.logins.get(name);
    if (login === undefined) return;
    this.comparing.add(name);
    try {
      const hash = await scrypt(password, Buffer.from(login.salt, 'base64'));
      if (timingSafeEqual(hash, Buffer.from(login.hash, 'base64'))) await this.drop(name, 'its password no longer works upstream');
    } finally {
      this.comparing.delete(name);
    }
  }

  /** etcd said the user is gone (or its password changed): its offline login and permissions go, in every process. */
  async drop(name: string, why: string): Promise<void> {
    if (!this.logins.has(name)) return;
    this.logins.delete(name);
    this.lastHashed.delete(name);
    this.dropped.delete(name);
    this.dropped.set(name, Date.now());
    while (this.dropped.size > MAX_DROPPED) {
      const oldest = this.dropped.keys().next();
      if (oldest.done === true) break;
      this.dropped.delete(oldest.value);
    }
    this.log.info({ user: nameForLog(name), why }, 'offline login dropped');
    await this.save();
  }

  /** Takes what other processes saved since: per user, the newer login (this one's on a tie: its permissions may be newer), and their drops. */
  async reload(): Promise<void> {
    const saved = await readLogins(this.file, this.log);
    for (const [name, at] of saved.dropped) if (at > (this.dropped.get(name) ?? 0)) this.dropped.set(name, at);
    for (const [name, login] of saved.logins) {
      const mine = this.logins.get(name);
      if (mine === undefined || login.verifiedAt > mine.verifiedAt) this.logins.set(name, login);
    }
    // A login verified upstream before it was dropped stays dropped; a later one (a new password) is kept.
    for (const [name, login] of this.logins) if (login.verifiedAt <= (this.dropped.get(name) ?? -1)) this.logins.delete(name);
  }

  /** Writes the file after what is being written; saves asked for meanwhile become one. */
  private save(): Promise<void> {
    if (this.saveQueued) return this.writing;
    this.saveQueued = true;
    this.writing = this.writing
      .then(async () => {
        this.saveQueued = false;
        await this.reload();
        const now = Date.now();
        // A drop older than the longest a login is good for can no longer be undone by an old copy.
        for (const [name, at] of this.dropped) if (now - at > this.maxAgeMs) this.dropped.delete(name);
        const saved: SavedFile = { users: Object.fromEntries(this.logins), dropped: Object.fromEntries(this.dropped) };
        await writeAtomically(this.file, (out) => out.write(JSON.stringify(saved)), 0o600);
      })
      .catch((error: unknown) => this.log.error({ file: this.file, err: error instanceof Error ? error.message : String(error) }, 'offline logins not saved'));
    return this.writing;
  }
}

async function readLogins(file: string, log: Logger): Promise<{ logins: Map<string, StoredLogin>; dropped: Map<string, number> }> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as SavedFile;
    return { logins: new Map(Object.entries(parsed.users ?? {})), dropped: new Map(Object.entries(parsed.dropped ?? {})) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ file, err: error instanceof Error ? error.message : String(error) }, 'offline logins file unreadable: its logins are not used');
    return { logins: new Map(), dropped: new Map() };
  }
}
