import type { ClientLogin } from './client-login';
import { EtcdRecorder } from './etcd-recorder';
import type { EtcdRevision, RestoreRecord } from './history';

/** What a restore fault tells of itself when etcd is back; `settled` comes later. */
export type RestoreStart = Omit<RestoreRecord, 'type' | 'etcd' | 'settled'>;

interface OpenRestore extends RestoreStart {
  settled: number;
}

/**
 * etcd's history across restores: one history watch (EtcdRecorder) per
 * epoch. A restore ends the running one (its revisions are the epoch's) and
 * starts the next just past the snapshot's revision, which is where the
 * restored etcd goes on.
 */
export class EtcdEpochs {
  private recorder: EtcdRecorder;
  private readonly finished: EtcdRevision[][] = [];
  private readonly restores: OpenRestore[] = [];
  private readonly failures: string[] = [];
  /** Whether `recorder` still belongs to an epoch not yet ended. */
  private recording = true;

  constructor(
    private readonly addresses: () => readonly string[],
    private readonly login: () => ClientLogin | null,
  ) {
    this.recorder = new EtcdRecorder(addresses, login());
  }

  /** The newest revision of the running epoch whose events have come. */
  get revision(): number {
    return this.recorder.revision;
  }

  /** Why a history watch ended before its time (the run is void then), or null. */
  get failure(): string | null {
    return [...this.failures, ...(this.recorder.failure === null ? [] : [this.recorder.failure])][0] ?? null;
  }

  caughtUp(revision: number, timeoutMs: number): Promise<boolean> {
    return this.recorder.caughtUp(revision, timeoutMs);
  }

  /**
   * Ends the running epoch. With `readTail` (the members are down for a
   * restore): what they made that the history watch had not received yet,
   * read from their data, is the epoch's last revisions; their time is the
   * end's (they were made before it).
   */
  async endEpoch(readTail?: (from: number) => Promise<{ tail: EtcdRevision[]; problems: string[] }>): Promise<void> {
    if (!this.recording) return;
    this.recording = false;
    const recorded = await this.recorder.close();
    if (this.recorder.failure !== null) this.failures.push(this.recorder.failure);
    const ended = performance.now();
    const { tail, problems } = readTail === undefined ? { tail: [], problems: [] } : await readTail(this.recorder.revision + 1);
    this.failures.push(...problems.map((problem) => `etcd's last revisions before a restore could not be read: ${problem}`));
    this.finished.push([...recorded, ...tail.map((entry) => ({ ...entry, at: ended }))]);
  }

  /** The restored etcd serves: its epoch begins past the snapshot's revision. Returns the record, for `settled`. */
  beginEpoch(restore: RestoreStart): { settle(at: number): void } {
    const open: OpenRestore = { ...restore, settled: Infinity };
    this.restores.push(open);
    this.recorder = new EtcdRecorder(this.addresses, this.login(), restore.snapshotRevision + 1);
    this.recording = true;
    return { settle: (at) => (open.settled = at) };
  }

  /** Ends the running epoch; etcd's history up to the first restore, and the restores with theirs. */
  async close(): Promise<{ etcd: EtcdRevision[]; restores: RestoreRecord[] }> {
    await this.endEpoch();
    const end = performance.now();
    return {
      etcd: this.finished[0] ?? [],
      // A restore the proxies never settled after: everything from it to the end may be either epoch's (the fault reported it).
      restores: this.restores.map((restore, i) => ({ type: 'restore', ...restore, settled: Math.min(restore.settled, end), etcd: this.finished[i + 1] ?? [] })),
    };
  }
}
