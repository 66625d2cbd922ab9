import { readHeaderRevision } from '../etcd/response-bytes';

/** What a write of keys was sent after: the revision handed out so far, and the mirror's (M). */
export interface WriteSent {
  readonly handedOut: number;
  readonly mirrored: number;
}

/** How long a read waits for the mirror to reach a revision this process already handed out, before it goes to etcd. */
export const FLOOR_WAIT_MS = 100;

/**
 * The highest revision this process has handed out in an answer etcd made
 * (a forwarded read or write), or learned as etcd's current one. An answer
 * from the mirror names M; a client that was just told a higher revision
 * through this proxy (a read of keys outside the mirror, a write the
 * mirror's watch cannot see, or one ahead of the watch by a few
 * milliseconds) must not be told a lower one next: etcd's revisions never go
 * back for its clients, and gateways take a lower one for a restored etcd
 * and list everything again.
 *
 * What an earlier process on this port answered, or this one before the
 * mirror took a published snapshot, is not known here, and may be newer than
 * M: a machine replaced during an outage starts from the bucket's snapshot,
 * older than what its predecessor served. Until etcd's current revision has
 * been learned since (`unknown`), the mirror's answers are not fresh ones;
 * that revision is then the floor, as high as anything answered before.
 */
export class RevisionFloor {
  private highest = 0;
  /** Since the process started, or since the mirror adopted a snapshot, etcd's current revision has not been learned. */
  private unlearned = true;
  /** See mirrorOfAnotherHistory. */
  private anotherHistory = false;

  get revision(): number {
    return this.highest;
  }

  /** True until etcd's current revision has been learned (noteUpstream) since the process started or the mirror adopted a snapshot. */
  get unknown(): boolean {
    return this.unlearned;
  }

  /** etcd was restored from a backup (or is another cluster), and the mirror discarded or replaced: the revisions handed out before mean nothing now. */
  reset(): void {
    this.highest = 0;
    this.anotherHistory = false;
  }

  /**
   * The mirror holds revisions the etcd that answers now never made: a write
   * was given one below what it already held (etcd restored from a backup, with the
   * same cluster ID or another). Its answers are of another history until
   * it has been discarded and listed again (`reset`).
   */
  get mirrorOfAnotherHistory(): boolean {
    return this.anotherHistory;
  }

  /**
   * An answer etcd made, on its way to a client. `before`: for a write of
   * keys, the floor and the mirror's revision when it was sent. etcd gives a
   * write a revision above every one it had made by then (one that wrote
   * nothing, its current one), so a lower one than the floor means etcd's
   * revisions went back (restored from a backup): the floor goes back with
   * them, or mirror reads would wait for revisions this etcd has not made;
   * and one below the mirror's means the mirror holds another history.
   */
  noteAnswer(answer: Buffer, before: WriteSent | null = null): void {
    const revision = readHeaderRevision(answer);
    // Below, not at: a write that wrote nothing (a compare that failed, a delete of no key) is answered at etcd's current revision.
    if (before !== null && revision > 0 && revision < before.mirrored) this.anotherHistory = true;
    if (before !== null && revision > 0 && revision < before.handedOut) this.highest = revision;
    else this.raise(revision);
  }

  /** The mirror was listed afresh from the etcd that answers now: its keys are that etcd's history again. */
  mirrorRelisted(): void {
    this.anotherHistory = false;
  }

  /** etcd's current revision, as a linearizable read (the read barrier's) answered it. */
  noteUpstream(revision: number): void {
    this.raise(revision);
    this.unlearned = false;
  }

  /** The mirror's content is a published snapshot now: what was answered before may be newer than it. */
  mirrorAdopted(): void {
    this.unlearned = true;
  }

  private raise(revision: number): void {
    if (revision > this.highest) this.highest = revision;
  }
}
