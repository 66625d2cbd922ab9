import type { Logger } from '../log';
import { isMajority, lookAtMembers } from '../upstream/member-look';
import type { UpstreamPool } from '../upstream/pool';
import { simpleTokenIndex } from './upstream-login';

/**
 * A second look this much after the first: a follower learns a new commit
 * index with the leader's next heartbeat (100 ms by default), so a token
 * issued just now is within every member's log by then.
 */
const SECOND_LOOK_AFTER_MS = 500;
/** Looks made at most before a look that no majority answered is taken as it is, and the pause between them. */
const LOOK_ATTEMPTS = 3;
const LOOK_RETRY_MS = 250;
/** A refusal is logged at most this often: after a restore, every client's token goes at once. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

/** What one look at every member's raft log found. */
interface LogLook {
  /** A majority of the members told their raft index. */
  readonly majority: boolean;
  /** The highest raft index told (committed entries). */
  readonly highest: number;
}

/**
 * Tells simple tokens that the cluster's current raft log cannot have
 * issued. etcd's simple token names the raft index of the login that issued
 * it, and every member that applied that login keeps a commit index at
 * least as high, until it is restored from a backup: then its new log
 * starts far below, it forgets its tokens, and it holds every call carrying
 * an old token until its log reaches the token's index (a watch for good:
 * nothing ends it), only to answer "invalid auth token" then. When a
 * majority of the members, looked at twice after the token arrived, all
 * have logs below its index, that is the answer etcd will give: the proxy
 * gives it at once, and the client logs in again, as after any etcd restart.
 */
export class TokenLogCheck {
  /** The cluster's log reached this index when last looked at: a token up to it needs no look (its newest value; it goes back with a restore). */
  private reached = 0;
  private running: Promise<LogLook> | null = null;
  /** The look that starts when the running one ends, shared by every token that arrived during it. */
  private next: Promise<LogLook> | null = null;
  private refusalLoggedAt = -Infinity;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly log: Logger,
  ) {}

  /** Whether `token` is a simple token past the log last seen: one that isOf... would look at the members for (cheap, on every forwarded call). */
  mayBePast(token: string): boolean {
    const index = simpleTokenIndex(token);
    return index !== null && index > this.reached;
  }

  /** etcd issued `token` just now (a login passed through): its log has reached the token's index. */
  issued(token: string): void {
    const index = simpleTokenIndex(token);
    if (index !== null) this.reached = Math.max(this.reached, index);
  }

  /** A call carrying `token` was held until its deadline: the members' logs are looked at again (in the background), as they may have gone back. */
  heldWith(token: string): void {
    if (simpleTokenIndex(token) !== null) this.lookAfterNow().catch(() => undefined);
  }

  /**
   * True when `token` is a simple token past every member's log. Tokens up
   * to the index last seen answer at once; others wait for two looks at the
   * members (a few ms each, shared by every token waiting). `fresh` looks
   * whatever was seen before (a check made with the token went unanswered).
   */
  async isPastEveryLog(token: string, fresh = false): Promise<boolean> {
    const index = simpleTokenIndex(token);
    if (index === null || (!fresh && index <= this.reached)) return false;
    if (!this.isBelow(await this.lookAfterNow(), index)) return false;
    await new Promise((resolve) => setTimeout(resolve, SECOND_LOOK_AFTER_MS));
    const second = await this.lookAfterNow();
    if (!this.isBelow(second, index)) return false;
    const now = Date.now();
    if (now - this.refusalLoggedAt >= REFUSAL_LOG_INTERVAL_MS) {
      this.refusalLoggedAt = now;
      this.log.info({ tokenIndex: index, raftIndex: second.highest }, "a simple token names a raft index past every member's log (etcd restored from a backup?): refused as etcd will refuse it, the client logs in again");
    }
    return true;
  }

  private isBelow(look: LogLook, index: number): boolean {
    return look.majority && look.highest < index;
  }

  /**
   * A look that starts after this call: one made earlier might predate the
   * token's login. At most one look runs and one waits, however many
   * tokens ask.
   */
  private lookAfterNow(): Promise<LogLook> {
    if (this.running === null) {
      this.running = this.look().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.next ??= this.running.then(() => {
      this.next = null;
      return this.lookAfterNow();
    });
    return this.next;
  }

  /**
   * Asks every member; a look that no majority answered says nothing, and
   * is made again (a member just restarted, a loaded machine): taken as an
   * answer, it would send the call on to an etcd that holds it until the
   * client's deadline.
   */
  private async look(): Promise<LogLook> {
    for (let attempt = 1; ; attempt += 1) {
      const members = await lookAtMembers(this.pool, 'auth-directory');
      const look: LogLook = { majority: isMajority(members), highest: Math.max(0, ...members.answers.map((answer) => answer.raftIndex)) };
      if (look.majority) this.reached = look.highest;
      if (look.majority || attempt >= LOOK_ATTEMPTS) return look;
      this.log.debug({ attempt, members: members.members, answered: members.answers.length }, "no majority of the members told its raft log: looked at again");
      await new Promise((resolve) => setTimeout(resolve, LOOK_RETRY_MS));
    }
  }
}
