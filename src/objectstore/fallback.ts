import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Mirror } from '../mirror/mirror';
import { fullJitterDelayMs } from '../mirror/reconnect-delay';
import { restoreInto } from '../snapshot/restore';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import { ObjectStoreError, type SnapshotBucket } from './bucket';
import { SnapshotRefused, fetchPublishedSnapshot, type RefusalKind } from './fetch';
import type { TrustedKeys } from './manifest-signature';

export interface SnapshotFallbackDeps {
  readonly bucket: SnapshotBucket;
  readonly store: MirrorStore;
  /** Where a fetched snapshot is written before it is verified and restored (objectStoreScratch). */
  readonly scratchDir: string;
  readonly mirror: Mirror;
  readonly liveness: Liveness;
  /** The mirrored ranges now (KeyRanges.describe(); they follow what --user may read): a snapshot of other keys is refused. */
  readonly scope: () => string;
  /** --snapshot-verify-key: a snapshot must be signed by one of them; null: unsigned ones are taken (warned of at start). */
  readonly trustedKeys: TrustedKeys | null;
  /** --snapshot-max-bytes: a bigger snapshot is refused before it is downloaded. */
  readonly maxBytes: number;
  readonly metrics: Metrics;
  readonly log: Logger;
}

export interface SnapshotFallback {
  close(): void;
}

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;

/** What one attempt came to, as counted in snapshot_fetches_total. */
type Outcome = 'adopted' | 'none-newer' | RefusalKind | ObjectStoreError['failure'];

/**
 * Serves from the published snapshot when etcd cannot be reached and the
 * mirror is empty or older than what was published: once the upstream is
 * declared lost (no member within --upstream-timeout), `latest` is fetched,
 * checked, and its keys become the mirror (marked stale, as every read while
 * the upstream is lost). A failed fetch is retried with growing, jittered
 * delays while etcd stays lost; a refused snapshot leaves the mirror as it
 * was. While etcd answers nothing is fetched; when it answers again the
 * mirror resumes at the snapshot's revision + 1 if it is the same cluster and
 * not compacted past it, and lists otherwise.
 *
 * The data dir's cluster is the only one the proxy knows: an empty data dir
 * (whose member list, if any, has no cluster id) takes a snapshot of any
 * cluster, so with verify keys the keys decide (one per cluster, or one
 * bucket prefix per cluster).
 */
export function startSnapshotFallback(deps: SnapshotFallbackDeps): SnapshotFallback {
  if (deps.trustedKeys === null) {
    deps.log.warn('no --snapshot-verify-key: anyone who may write the bucket can make this proxy serve configuration of their choosing when it falls back to a published snapshot');
  }
  return new FallbackLoop(deps);
}

/** Outcomes after which only a newer snapshot is worth fetching: looked for again at the longest interval. */
const SETTLED: ReadonlySet<Outcome> = new Set<Outcome>(['adopted', 'none-newer', 'refused', 'bad-signature', 'too-large']);

/** One look at `latest` while etcd is lost, then the next after a delay, until it answers or the proxy stops. */
class FallbackLoop implements SnapshotFallback {
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private running = false;
  private closed = false;
  /** The revision of a snapshot refused last: the same one is not fetched again. */
  private refusedRevision = 0;
  /** The last refusal logged: the same one, met again at each look at `latest`, is logged once. */
  private lastRefusal = '';
  private readonly onLost = (): void => void this.run();
  private readonly onBack = (): void => {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.failures = 0;
  };

  constructor(private readonly deps: SnapshotFallbackDeps) {
    deps.liveness.on('lost', this.onLost);
    deps.liveness.on('back', this.onBack);
    if (deps.liveness.isLost()) this.onLost();
  }

  close(): void {
    this.closed = true;
    this.deps.liveness.off('lost', this.onLost);
    this.deps.liveness.off('back', this.onBack);
    if (this.timer !== null) clearTimeout(this.timer);
  }

  private async run(): Promise<void> {
    if (this.running || this.closed || !this.deps.liveness.isLost()) return;
    this.running = true;
    let outcome: Outcome;
    let dir: string | null = null;
    try {
      dir = await mkdtemp(join(this.deps.scratchDir, 'fetch-'));
      outcome = await this.attempt(dir);
    } catch (error) {
      outcome = this.failed(error);
    } finally {
      this.running = false;
    }
    // Counted as soon as it is known (the snapshot may be served already), the file removed after.
    this.deps.metrics.snapshotFetches.inc({ result: outcome });
    if (dir !== null) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    if (!this.closed) this.scheduleAfter(outcome);
  }

  private async attempt(dir: string): Promise<Outcome> {
    const { bucket, store, mirror, scope, trustedKeys, maxBytes, metrics, log } = this.deps;
    const meta = store.meta();
    const fetched = await fetchPublishedSnapshot(bucket, join(dir, 'snapshot.jsonl'), {
      clusterId: meta.identity?.cluster_id ?? null,
      scope: scope(),
      newerThan: Math.max(meta.revision, this.refusedRevision),
      trustedKeys,
      maxBytes,
      onDownloaded: (bytes) => metrics.snapshotFetchBytes.inc(bytes),
    });
    if (fetched === null) return 'none-newer';
    try {
      // A mirror that holds keys takes only a snapshot of its own history (a restored etcd's is not).
      const restored = await mirror.adopt(() => restoreInto(store, fetched.reader, { extending: true }));
      log.warn({ revision: restored.revision, keys: restored.keys, publishedAt: fetched.manifest.published_at, publisher: fetched.manifest.publisher }, 'etcd unreachable: serving the published snapshot');
      return 'adopted';
    } catch (error) {
      if (error instanceof Error && error.name === 'SnapshotError') throw new SnapshotRefused(error.message, Number(fetched.manifest.revision));
      throw error;
    }
  }

  /** What a failed attempt came to, logged (a refusal met again is logged once). */
  private failed(error: unknown): Outcome {
    const message = error instanceof Error ? error.message : String(error);
    if (!(error instanceof SnapshotRefused)) {
      const outcome = error instanceof ObjectStoreError ? error.failure : 'failed';
      this.deps.log.error({ err: message }, `published snapshot not used (${outcome})`);
      return outcome;
    }
    this.refusedRevision = Math.max(this.refusedRevision, error.revision);
    if (message === this.lastRefusal) this.deps.log.debug({ err: message }, `published snapshot not used (${error.kind}), as before`);
    else this.deps.log.error({ err: message }, `published snapshot not used (${error.kind})`);
    this.lastRefusal = message;
    return error.kind;
  }

  private scheduleAfter(outcome: Outcome): void {
    let delay: number;
    if (SETTLED.has(outcome)) {
      // Nothing to retry; a newer snapshot may still be published while etcd stays lost (it may be lost only from here).
      this.failures = 0;
      delay = MAX_RETRY_MS;
    } else {
      // The store was unreachable or refused us: try again, later each time.
      delay = Math.max(FIRST_RETRY_MS / 4, fullJitterDelayMs(this.failures, FIRST_RETRY_MS, MAX_RETRY_MS));
      this.failures += 1;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, delay);
    this.timer.unref();
  }
}
