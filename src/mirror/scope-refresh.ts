import { AuthRefused } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { Logger } from '../log';
import type { UpstreamMember } from '../upstream/pool';
import { followUserScope, type MirrorScope } from './mirror-scope';
import type { Relister } from './relist';

/** The longest between two looks at whether the scope is due to be asked again while watching. */
const REFRESH_TICK_MS = 10_000;

/**
 * With auth on and a user of its own, the mirror holds what that user may
 * read (of what is configured): asked at every (re)connect and every
 * `refreshMs` while watching. A scope other than the one on disk means a
 * list; a user who may read nothing ends the watch.
 */
export class ScopeRefresh {
  /** When what the mirror's user may read was last asked. */
  private checkedAt = 0;

  constructor(
    private readonly scope: MirrorScope,
    private readonly identity: UpstreamLogin,
    private readonly relister: Relister,
    private readonly log: Logger,
    /** How often the scope is asked again while auth is on (--auth-refresh-interval). */
    private readonly refreshMs: number,
    private readonly deadlineMs: number,
    /** True while the store holds content (a change of scope then means a list). */
    private readonly hasContent: () => boolean,
  ) {}

  /** Asks `member` what the mirror's user may read now; a change of a mirror with content asks for a list. */
  async check(member: UpstreamMember): Promise<void> {
    const changed = await followUserScope(this.scope, this.identity, member, this.log, this.deadlineMs);
    this.checkedAt = Date.now();
    if (changed && this.hasContent()) this.relister.requestUnlessPending("the mirrored ranges changed (what the mirror's user may read)");
  }

  /**
   * While the mirror watches `member`: asks again when due, and calls `end`
   * when a list is due or the user may read nothing. Returns the stop.
   */
  whileWatching(member: UpstreamMember, end: (error: Error) => void): () => void {
    const refresh = setInterval(() => {
      if (Date.now() - this.checkedAt < this.refreshMs || !this.identity.hasTokenAt(member)) return;
      this.checkedAt = Date.now();
      this.check(member).then(
        () => {
          const reason = this.relister.pending;
          if (reason !== null) end(new Error(reason));
        },
        (error: unknown) => {
          if (error instanceof AuthRefused) end(error);
        },
      );
    }, Math.min(this.refreshMs, REFRESH_TICK_MS));
    refresh.unref();
    return () => clearInterval(refresh);
  }
}
