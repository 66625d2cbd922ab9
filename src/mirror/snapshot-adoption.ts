import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';

/**
 * Replacing the mirror's content from a published snapshot while no member
 * answers. Only while the sync loop waits to try etcd again (`idle`): etcd's
 * own data is better than any snapshot. The loop's next attempt waits for an
 * adoption under way.
 */
export class SnapshotAdoption {
  /** Content being adopted (never rejects): the loop's next attempt waits for it. */
  private adopting: Promise<void> | null = null;

  constructor(
    private readonly store: MirrorStore,
    private readonly log: Logger,
    /** True while the mirror may take content from elsewhere (open, and waiting to try etcd again). */
    private readonly idle: () => boolean,
    /** The store holds the adopted content at `revision`; M was `previous`. */
    private readonly onAdopted: (revision: number, previous: number) => void,
  ) {}

  /** The adoption under way, for the loop to wait for; null when none. */
  get underWay(): Promise<void> | null {
    return this.adopting;
  }

  async adopt<T extends { revision: number }>(restore: () => Promise<T>): Promise<T> {
    if (!this.idle() || this.adopting !== null) throw new Error('the mirror is syncing with etcd: nothing to adopt');
    const previous = this.store.meta().revision;
    const running = restore();
    this.adopting = running.then(
      () => undefined,
      () => undefined,
    );
    try {
      const result = await running;
      this.log.info({ revision: result.revision, previous }, 'mirror content adopted from a snapshot');
      this.onAdopted(result.revision, previous);
      return result;
    } finally {
      this.adopting = null;
    }
  }
}
