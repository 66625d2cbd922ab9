import { readHeaderRevision } from '../etcd/response-bytes';

/** How long a read waits for the mirror to reach a revision this process already handed out, before it goes to etcd. */
export const FLOOR_WAIT_MS = 100;

/**
 * The highest revision this process has handed out in an answer etcd made
 * (a forwarded read or write). An answer from the mirror names M; a client
 * that was just told a higher revision through this proxy (a read of keys
 * outside the mirror, a write the mirror's watch cannot see, or one ahead
 * of the watch by a few milliseconds) must not be told a lower one next:
 * etcd's revisions never go back for its clients, and gateways take a lower
 * one for a restored etcd and list everything again.
 */
export class RevisionFloor {
  private highest = 0;

  get revision(): number {
    return this.highest;
  }

  /** An answer etcd made, on its way to a client. */
  noteAnswer(answer: Buffer): void {
    const revision = readHeaderRevision(answer);
    if (revision > this.highest) this.highest = revision;
  }
}
