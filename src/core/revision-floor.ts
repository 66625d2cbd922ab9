import { readHeaderRevision } from '../etcd/response-bytes';

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

  get revision(): number {
    return this.highest;
  }

  /** True until etcd's current revision has been learned (noteUpstream) since the process started or the mirror adopted a snapshot. */
  get unknown(): boolean {
    return this.unlearned;
  }

  /** etcd was restored from a backup (or is another cluster): the revisions handed out before mean nothing now. */
  reset(): void {
    this.highest = 0;
  }

  /**
   * An answer etcd made, on its way to a client. `handedOutBefore`: for a
   * write, the floor when it was sent. etcd gives a write a revision above
   * every one it had made by then, so a lower one means etcd's revisions went
   * back (restored from a backup): the floor goes back with them, or mirror
   * reads would wait for revisions this etcd has not made.
   */
  noteAnswer(answer: Buffer, handedOutBefore: number | null = null): void {
    const revision = readHeaderRevision(answer);
    if (handedOutBefore !== null && revision > 0 && revision < handedOutBefore) this.highest = revision;
    else this.raise(revision);
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
