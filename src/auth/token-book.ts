/** Tokens remembered per user at most: a client logging in again and again pushes out only its own user's oldest. */
export const MAX_TOKENS_PER_USER = 64;
/** Tokens remembered in all; past it the oldest of all goes (every user's are real: etcd issued or signed them). */
export const MAX_TOKENS = 100_000;

/**
 * Tokens and what is known of each, bounded per user and in all, so that
 * logins by one user (however many) never push out another user's tokens.
 * Insertion order is age: a token added again counts as new.
 */
export class TokenBook<V extends { readonly user: string }> {
  private readonly entries = new Map<string, V>();
  /** Each user's tokens, oldest first. */
  private readonly byUser = new Map<string, Set<string>>();

  constructor(
    private readonly perUser = MAX_TOKENS_PER_USER,
    private readonly total = MAX_TOKENS,
  ) {}

  get(token: string): V | undefined {
    return this.entries.get(token);
  }

  set(token: string, value: V): void {
    this.delete(token);
    this.entries.set(token, value);
    let mine = this.byUser.get(value.user);
    if (mine === undefined) {
      mine = new Set();
      this.byUser.set(value.user, mine);
    }
    mine.add(token);
    if (mine.size > this.perUser) this.deleteFirst(mine.values());
    if (this.entries.size > this.total) this.deleteFirst(this.entries.keys());
  }

  private deleteFirst(tokens: IterableIterator<string>): void {
    const oldest = tokens.next();
    if (oldest.done !== true) this.delete(oldest.value);
  }

  /** Removes the token; true when it was here. */
  delete(token: string): boolean {
    const value = this.entries.get(token);
    if (value === undefined) return false;
    this.entries.delete(token);
    const mine = this.byUser.get(value.user);
    mine?.delete(token);
    if (mine?.size === 0) this.byUser.delete(value.user);
    return true;
  }

  tokensOf(user: string): string[] {
    return [...(this.byUser.get(user) ?? [])];
  }

  values(): IterableIterator<V> {
    return this.entries.values();
  }

  entriesNow(): [string, V][] {
    return [...this.entries];
  }

  clear(): void {
    this.entries.clear();
    this.byUser.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/** A bounded record of tokens etcd no longer takes, and since when (the oldest goes first). */
export class ForgottenTokens {
  private readonly at = new Map<string, number>();

  constructor(private readonly max = MAX_TOKENS) {}

  add(token: string, when = Date.now()): void {
    this.at.delete(token);
    this.at.set(token, when);
    if (this.at.size > this.max) {
      const oldest = this.at.keys().next();
      if (oldest.done !== true) this.at.delete(oldest.value);
    }
  }

  /** When the token was forgotten, if it was. */
  since(token: string): number | undefined {
    return this.at.get(token);
  }

  delete(token: string): void {
    this.at.delete(token);
  }
}
