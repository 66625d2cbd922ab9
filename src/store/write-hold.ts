import type { SpaceReserve } from './space-reserve';

/** errno of ENOSPC, which lmdb-js hands back as the error's code. */
const ENOSPC_ERRNO = 28;
/** LMDB's MDB_MAP_FULL: the environment reached its map size. */
const MDB_MAP_FULL = -30792;

/** A write the store refused, or that failed, because its disk (or LMDB's map) had no room. */
export class StoreFull extends Error {
  constructor(cause: unknown) {
    super(`mirror store cannot write: no room on its disk (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
  }
}

/** Whether `error` says the disk or LMDB's map had no room for a write. */
export function isOutOfSpace(error: unknown): boolean {
  if (error instanceof StoreFull) return true;
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (code === ENOSPC_ERRNO || code === 'ENOSPC' || code === MDB_MAP_FULL) return true;
  return /No space left on device|MDB_MAP_FULL/.test(error.message);
}

/** Writes are held back since `since` (ms, Date.now()) because of `error`, met by a write that wanted about `needBytes` of new pages. */
export interface WriteHold {
  readonly since: number;
  readonly error: StoreFull;
  readonly needBytes: number;
}

/** What the store tells those who watch its writes (metrics, the log, the mirror). */
export type WriteNotice = { kind: 'failed'; error: unknown; held: WriteHold | null } | { kind: 'resumed'; heldMs: number };

/**
 * The store's writes and what happens when one fails for lack of room.
 * Before each write the space it may need is claimed on the disk
 * (space-reserve.ts), so a full disk is found there, before LMDB writes
 * anything. After the first failure for lack of room nothing is written to
 * LMDB until room is found again (resume()): lmdb-js has aborted the process
 * after failed commits on a full disk, and a commit retried in a loop can
 * only fail again. A write that can wait (what etcd said of its members and
 * auth, the compaction point) is kept, the latest of each kind, and made on
 * resume.
 */
export class WriteGuard {
  private hold: WriteHold | null = null;
  /** Writes kept while held, by kind: only the latest of each matters, so this holds a few at most. */
  private readonly deferred = new Map<string, () => void>();
  private readonly listeners: ((notice: WriteNotice) => void)[] = [];
  private waiters: (() => void)[] = [];

  /** reserve: null for a store open read-only (it writes nothing). */
  constructor(private readonly reserve: SpaceReserve | null) {}

  get held(): WriteHold | null {
    return this.hold;
  }

  onNotice(listener: (notice: WriteNotice) => void): void {
    this.listeners.push(listener);
  }

  /** Resolves once writes are made again (at once when they are). */
  whenWritable(): Promise<void> {
    if (this.hold === null) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Makes one write now, after claiming room for about `needBytes` of new
   * pages; throws StoreFull while held, and holds writes from a failure for
   * lack of room on.
   */
  run<T>(write: () => T, needBytes = 0): T {
    if (this.hold !== null) throw this.hold.error;
    try {
      this.reserve?.ensure(needBytes);
      return write();
    } catch (error) {
      throw this.failed(error, needBytes);
    }
  }

  /** A write that can wait: made now, or, while held (or failing for lack of room), kept as the latest of `kind` until resume. */
  runOrDefer(kind: string, write: () => void): void {
    if (this.hold !== null) {
      this.deferred.set(kind, write);
      return;
    }
    try {
      this.reserve?.ensure(0);
      write();
    } catch (error) {
      const failure = this.failed(error);
      if (!(failure instanceof StoreFull)) throw failure;
      this.deferred.set(kind, write);
    }
  }

  /** Room was found: the kept writes are made, then everyone waiting is told. A kept write failing again holds again. */
  resume(): void {
    const hold = this.hold;
    if (hold === null) return;
    this.hold = null;
    const kept = [...this.deferred.entries()];
    this.deferred.clear();
    for (const [kind, write] of kept) {
      try {
        this.runOrDefer(kind, write);
      } catch {
        // Not for lack of room: what it would have saved is what etcd will say again.
      }
    }
    if (this.hold !== null) return;
    this.tell({ kind: 'resumed', heldMs: Date.now() - hold.since });
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** A write failed: for lack of room it holds writes from now on (once), and what to throw is returned. */
  private failed(error: unknown, needBytes = 0): unknown {
    if (!isOutOfSpace(error)) {
      this.tell({ kind: 'failed', error, held: null });
      return error;
    }
    const full = error instanceof StoreFull ? error : new StoreFull(error);
    this.hold = { since: Date.now(), error: full, needBytes };
    this.tell({ kind: 'failed', error, held: this.hold });
    return full;
  }

  private tell(notice: WriteNotice): void {
    for (const listener of this.listeners) listener(notice);
  }
}
