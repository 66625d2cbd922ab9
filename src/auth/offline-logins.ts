import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { writeAtomically } from '../files/atomic-file';
import type { Logger } from '../log';
import type { KeyPermission, PermissionType } from './permissions';

/** scrypt's cost: about 50 ms of one thread-pool thread per hash, 16 MiB of memory. */
const SCRYPT: ScryptOptions = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;
/** Failed offline logins allowed per user per minute, and for all users together. */
const FAILURES_PER_USER_PER_MINUTE = 5;
const FAILURES_PER_MINUTE = 50;
const MINUTE_MS = 60_000;

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

export type OfflineVerdict = 'ok' | 'refused' | 'throttled';

/** The file in the data dir. */
export const OFFLINE_LOGINS_FILE = 'offline-logins.json';

/**
 * Logins the proxy may answer itself while etcd is down (--auth-offline-login):
 * a name and password that succeeded upstream within `maxAgeMs`. Kept in the
 * data dir (mode 0600) as a salted, slow hash, with the user's last known read
 * permissions, so that a gateway restarted during an outage (or a proxy
 * restarted during one) can log in and read what it could before. Failed
 * attempts are limited per user and overall.
 */
export class OfflineLogins {
  private readonly failures = new Map<string, number[]>();
  private allFailures: number[] = [];
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: string,
    private readonly maxAgeMs: number,
    private readonly log: Logger,
    private readonly logins: Map<string, StoredLogin>,
  ) {}

  static async open(file: string, maxAgeMs: number, log: Logger): Promise<OfflineLogins> {
    return new OfflineLogins(file, maxAgeMs, log, await readLogins(file, log));
  }

  /** A login succeeded upstream: its password's hash is kept (a new salt each time). */
  async remember(name: string, password: string): Promise<void> {
    const salt = randomBytes(SALT_BYTES);
    const hash = await scrypt(password, salt);
    const previous = this.logins.get(name);
    this.logins.set(name, { ...previous, salt: salt.toString('base64'), hash: hash.toString('base64'), verifiedAt: Date.now() });
    await this.save();
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

  /** During an outage: whether `password` is the one `name` last logged in with upstream, recently enough. */
  async verify(name: string, password: string): Promise<OfflineVerdict> {
    const now = Date.now();
    if (this.throttled(name, now)) {
      this.log.warn({ user: name }, 'offline login refused: too many failed attempts');
      return 'throttled';
    }
    // Serving processes (--workers) share the file: a login remembered by another one counts here too.
    await this.reload();
    const login = this.logins.get(name);
    // An unknown user costs a hash too, so that timing does not tell which names are known.
    const salt = login === undefined ? randomBytes(SALT_BYTES) : Buffer.from(login.salt, 'base64');
    const hash = await scrypt(password, salt);
    const matches = login !== undefined && timingSafeEqual(hash, Buffer.from(login.hash, 'base64'));
    if (matches && login !== undefined && now - login.verifiedAt <= this.maxAgeMs) return 'ok';
    this.recordFailure(name, now);
    this.log.warn({ user: name, reason: login === undefined ? 'unknown user' : matches ? 'last upstream login too old' : 'wrong password' }, 'offline login refused');
    return 'refused';
  }

  private throttled(name: string, now: number): boolean {
    const recent = (times: number[]): number[] => times.filter((t) => now - t < MINUTE_MS);
    this.allFailures = recent(this.allFailures);
    const mine = recent(this.failures.get(name) ?? []);
    this.failures.set(name, mine);
    return mine.length >= FAILURES_PER_USER_PER_MINUTE || this.allFailures.length >= FAILURES_PER_MINUTE;
  }

  private recordFailure(name: string, now: number): void {
    this.failures.set(name, [...(this.failures.get(name) ?? []), now]);
    this.allFailures.push(now);
  }

  /** Takes what other processes saved since: per user, the newer login (this one's on a tie: its permissions may be newer). */
  async reload(): Promise<void> {
    for (const [name, saved] of await readLogins(this.file, this.log)) {
      const mine = this.logins.get(name);
      if (mine === undefined || saved.verifiedAt > mine.verifiedAt) this.logins.set(name, saved);
    }
  }

  private save(): Promise<void> {
    this.writing = this.writing
      .then(async () => {
        await this.reload();
        const users = Object.fromEntries(this.logins);
        await writeAtomically(this.file, (out) => out.write(JSON.stringify({ users })), 0o600);
      })
      .catch((error: unknown) => this.log.error({ file: this.file, err: error instanceof Error ? error.message : String(error) }, 'offline logins not saved'));
    return this.writing;
  }
}

async function readLogins(file: string, log: Logger): Promise<Map<string, StoredLogin>> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { users?: Record<string, StoredLogin> };
    return new Map(Object.entries(parsed.users ?? {}));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ file, err: error instanceof Error ? error.message : String(error) }, 'offline logins file unreadable: its logins are not used');
    return new Map();
  }
}
