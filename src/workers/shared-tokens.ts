import type { SharedToken } from '../auth/directory';
import { ForgottenTokens, TokenBook } from '../auth/token-book';

/**
 * The primary's list of tokens the workers learned (--workers), told to
 * every other worker at once and to each worker started later. Bounded per
 * user as a worker's own directory is, so one user's many logins push out
 * no other user's. A token etcd no longer takes, or one the proxy issued
 * during an outage that is over, is dropped and never told again: a
 * restarted worker must not take back what the others forgot.
 */
export class SharedTokens {
  private readonly tokens = new TokenBook<SharedToken>();
  private readonly forgotten = new ForgottenTokens();
  /** The auth store's revision is at least this (JWTs issued before it are refused during an outage). */
  private authRevisionAtLeast = 0;

  /** A worker told of `shared`: true when the others are to hear of it. */
  told(shared: SharedToken, upstreamLost: boolean): boolean {
    const forgottenAt = this.forgotten.since(shared.token);
    // A proxy token told again after it ended, or a login older than etcd's refusal of it: not taken back.
    if (forgottenAt !== undefined && (shared.kind === 'proxy' || shared.learnedAt <= forgottenAt)) return false;
    if (shared.kind === 'proxy' && !upstreamLost) return false;
    this.forgotten.delete(shared.token);
    this.tokens.set(shared.token, shared);
    return true;
  }

  forget(token: string): void {
    this.tokens.delete(token);
    this.forgotten.add(token);
  }

  /** A worker learned that the auth store reached `atLeast`: true when that is news for the others. */
  authRevision(atLeast: number): boolean {
    if (atLeast <= this.authRevisionAtLeast) return false;
    this.authRevisionAtLeast = atLeast;
    return true;
  }

  /** etcd answers again: the proxy's own tokens ended. */
  upstreamBack(): void {
    for (const [token, shared] of this.tokens.entriesNow()) if (shared.kind === 'proxy') this.forget(token);
  }

  /** What a worker that starts now is told. */
  replay(): { readonly authRevisionAtLeast: number; readonly tokens: readonly SharedToken[] } {
    return { authRevisionAtLeast: this.authRevisionAtLeast, tokens: [...this.tokens.values()] };
  }
}
