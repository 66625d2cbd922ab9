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
export function startSnapshotFallback({ bucket, store, scratchDir, mirror, liveness, scope, trustedKeys, maxBytes, metrics, log }: SnapshotFallbackDeps): SnapshotFallback {
  let timer: NodeJS.Timeout | null = null;
  let failures = 0;
  let running = false;
  let closed = false;
  /** The revision of a snapshot refused last: the same one is not fetched again. */
  let refusedRevision = 0;
  /** The last refusal logged: the same one, met again at each look at `latest`, is logged once. */
  let lastRefusal = '';

  if (trustedKeys === null) {
    log.warn('no --snapshot-verify-key: anyone who may write the bucket can make this proxy serve configuration of their choosing when it falls back to a published snapshot');
  }

  const attempt = async (dir: string): Promise<Outcome> => {
    const meta = store.meta();
    const fetched = await fetchPublishedSnapshot(bucket, join(dir, 'snapshot.jsonl'), {
      clusterId: meta.identity?.cluster_id ?? null,
      scope: scope(),
      newerThan: Math.max(meta.revision, refusedRevision),
      trustedKeys,
      maxBytes,
      onDownloaded: (bytes) => metrics.snapshotFetchBytes.inc(bytes),
    });
    if (fetched === null) return 'none-newer';
    try {
      const restored = await mirror.adopt(() => restoreInto(store, fetched.reader));
      log.warn({ revision: restored.revision, keys: restored.keys, publishedAt: fetched.manifest.published_at, publisher: fetched.manifest.publisher }, 'etcd unreachable: serving the published snapshot');
      return 'adopted';
    } catch (error) {
      if (error instanceof Error && error.name === 'SnapshotError') throw new SnapshotRefused(error.message, Number(fetched.manifest.revision));
      throw error;
    }
  };

  const run = async (): Promise<void> => {
    if (running || closed || !liveness.isLost()) return;
    running = true;
    let outcome: Outcome;
    let dir: string | null = null;
    try {
      dir = await mkdtemp(join(scratchDir, 'fetch-'));
      outcome = await attempt(dir);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof SnapshotRefused) {
        outcome = error.kind;
        refusedRevision = Math.max(refusedRevision, error.revision);
        if (message === lastRefusal) log.debug({ err: message }, `published snapshot not used (${outcome}), as before`);
        else log.error({ err: message }, `published snapshot not used (${outcome})`);
        lastRefusal = message;
      } else {
        outcome = error instanceof ObjectStoreError ? error.failure : 'failed';
        log.error({ err: message }, `published snapshot not used (${outcome})`);
      }
    } finally {
      running = false;
    }
    // Counted as soon as it is known (the snapshot may be served already), the file removed after.
    metrics.snapshotFetches.inc({ result: outcome });
    if (dir !== null) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    if (closed) return;
    let delay: number;
    if (outcome === 'adopted' || outcome === 'none-newer' || outcome === 'refused' || outcome === 'bad-signature' || outcome === 'too-large') {
      // Nothing to retry; a newer snapshot may still be published while etcd stays lost (it may be lost only from here).
      failures = 0;
      delay = MAX_RETRY_MS;
    } else {
      // The store was unreachable or refused us: try again, later each time.
      delay = Math.max(FIRST_RETRY_MS / 4, fullJitterDelayMs(failures, FIRST_RETRY_MS, MAX_RETRY_MS));
      failures += 1;
    }
    timer = setTimeout(() => {
      timer = null;
      void run();
    }, delay);
    timer.unref();
  };

  const onLost = (): void => void run();
  const onBack = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    failures = 0;
  };
  liveness.on('lost', onLost);
  liveness.on('back', onBack);
  if (liveness.isLost()) onLost();
  return {
    close() {
      closed = true;
      liveness.off('lost', onLost);
      liveness.off('back', onBack);
      if (timer !== null) clearTimeout(timer);
    },
  };
}
