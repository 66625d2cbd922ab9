/**
 * How many offline logins may be tried, shared by every serving process
 * (with --workers the primary holds the counts and the workers ask it).
 *
 * An attempt is reserved before its password is hashed, in three budgets at
 * once, each a sliding minute:
 *
 * * per source (the client's IP address; an IPv6 one by its /64): 20. One client, however many
 *   names it tries, spends only its own budget.
 * * per user, for names that have an offline login to guess: 5. A password
 *   can be guessed at 5 tries a minute whoever tries; only such a user's own
 *   budget can be spent on its name, so junk names lock nobody out.
 * * overall: 200, ten sources' worth, so that junk from one source (or a few)
 *   cannot exhaust it and lock every user out; it bounds the hashing (about
 *   50 ms of one thread each) that anonymous clients can cause.
 *
 * An attempt that succeeds gives its reservation back; a refused or failed
 * one keeps it for the minute. The maps are bounded: sources and users past
 * the cap push out the least recently used.
 */
export const LOGIN_WINDOW_MS = 60_000;
export const ATTEMPTS_PER_SOURCE = 20;
export const ATTEMPTS_PER_USER = 5;
export const ATTEMPTS_OVERALL = 200;
const MAX_SOURCES = 4_096;
const MAX_USERS = 10_000;

export interface LoginAttempt {
  /** The name tried (already within the name bound). */
  readonly user: string;
  /** The client's address, without its port. */
  readonly source: string;
  /** Whether the name has an offline login (only then does it get a budget of its own). */
  readonly known: boolean;
}

/** A reservation that was granted: `at` identifies it for giving it back. */
export interface Reserved {
  readonly at: number;
}

/** Where attempts are reserved: the counts in this process, or the primary's over IPC. */
export interface LoginBudget {
  /** Reserves one attempt in every budget it concerns, or null when one is spent. */
  reserve(attempt: LoginAttempt): Promise<Reserved | null>;
  /** The attempt succeeded: its reservation goes back. */
  giveBack(attempt: LoginAttempt, reserved: Reserved): void;
}

/** Timestamps within the window, oldest first; never more than the budget's size. */
class Window {
  private times: number[] = [];
  constructor(private readonly size: number) {}

  hasRoom(now: number): boolean {
    while (this.times.length > 0 && now - (this.times[0] ?? 0) >= LOGIN_WINDOW_MS) this.times.shift();
    return this.times.length < this.size;
  }

  take(now: number): void {
    this.times.push(now);
  }

  giveBack(at: number): void {
    const i = this.times.lastIndexOf(at);
    if (i >= 0) this.times.splice(i, 1);
  }
}

/** A bounded map of windows: the least recently used goes when it is full. */
class Windows {
  private readonly byKey = new Map<string, Window>();
  constructor(
    private readonly size: number,
    private readonly maxKeys: number,
  ) {}

  get(key: string): Window {
    let window = this.byKey.get(key);
    if (window !== undefined) this.byKey.delete(key);
    else window = new Window(this.size);
    this.byKey.set(key, window);
    // The least recently used goes: many sources (or names) at once can only reset budgets long unused.
    if (this.byKey.size > this.maxKeys) {
      const oldest = this.byKey.keys().next();
      if (oldest.done !== true) this.byKey.delete(oldest.value);
    }
    return window;
  }

  peek(key: string): Window | undefined {
    return this.byKey.get(key);
  }

  get count(): number {
    return this.byKey.size;
  }
}

/** The counts themselves: in the single process, or in the primary for every worker. */
export class LoginLimiter implements LoginBudget {
  private readonly sources = new Windows(ATTEMPTS_PER_SOURCE, MAX_SOURCES);
  private readonly users = new Windows(ATTEMPTS_PER_USER, MAX_USERS);
  private readonly overall = new Window(ATTEMPTS_OVERALL);
  private lastAt = 0;

  constructor(private readonly now: () => number = Date.now) {}

  reserveNow(attempt: LoginAttempt): Reserved | null {
    // Each reservation gets its own instant, so giving one back removes exactly it.
    const now = Math.max(this.now(), this.lastAt + 0.001);
    const windows = [this.overall, this.sources.get(attempt.source), ...(attempt.known ? [this.users.get(attempt.user)] : [])];
    if (!windows.every((window) => window.hasRoom(now))) return null;
    this.lastAt = now;
    for (const window of windows) window.take(now);
    return { at: now };
  }

  reserve(attempt: LoginAttempt): Promise<Reserved | null> {
    return Promise.resolve(this.reserveNow(attempt));
  }

  giveBack(attempt: LoginAttempt, reserved: Reserved): void {
    this.overall.giveBack(reserved.at);
    this.sources.peek(attempt.source)?.giveBack(reserved.at);
    if (attempt.known) this.users.peek(attempt.user)?.giveBack(reserved.at);
  }

  /** How many sources and users are tracked (for tests of the bound). */
  tracked(): { sources: number; users: number } {
    return { sources: this.sources.count, users: this.users.count };
  }
}

/**
 * The budget key of a client from its peer string ("1.2.3.4:5678",
 * "[::1]:5678", grpc-js's "::1:5678"): the IPv4 address, or the /64 network
 * of an IPv6 one (a single host usually holds a whole /64, so counting each
 * address apart would give it billions of budgets). The port never counts.
 */
export function sourceOf(peer: string | undefined): string {
  if (peer === undefined || peer === '') return 'unknown';
  const bare = peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(bare);
  // Both transports always name the port: the last ":digits" is it.
  const host = bracketed !== null ? (bracketed[1] ?? bare) : bare.replace(/:\d+$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped !== null) return mapped[1] ?? host;
  if (!host.includes(':')) return host.slice(0, 64);
  return `${ipv6Groups(host).slice(0, 4).join(':')}::/64`;
}

/** The eight groups of an IPv6 address, "::" expanded (a zone or embedded IPv4 is cut off). */
function ipv6Groups(address: string): string[] {
  const plain = address.split('%')[0] ?? address;
  const [head = '', tail] = plain.split('::');
  const front = head === '' ? [] : head.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array.from({ length: Math.max(0, 8 - front.length - back.length) }, () => '0');
  return [...front, ...zeros, ...back].map((group) => (/^[0-9a-f]{1,4}$/i.test(group) ? group.toLowerCase().replace(/^0+(?=.)/, '') : '0')).slice(0, 8);
}
