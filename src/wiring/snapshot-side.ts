import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Mirror } from '../mirror/mirror';
import type { MirrorScope } from '../mirror/mirror-scope';
import type { ProxyConfig } from '../settings/types';
import type { PeriodicSnapshots } from '../snapshot/periodic';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';

export interface SnapshotSideParts {
  readonly config: ProxyConfig;
  readonly store: MirrorStore;
  readonly mirror: Mirror;
  readonly liveness: Liveness;
  readonly scope: MirrorScope;
  readonly metrics: Metrics;
  /** The process's logger: each part takes its own component. */
  readonly log: Logger;
  /** etcd's revision now, as a majority of its members tell it (null: not known). */
  readonly clusterRevision: () => Promise<number | null>;
}

export interface SnapshotSide {
  close(): Promise<void>;
}

/** Snapshot files in --snapshot-dir, and snapshots in a bucket: each only when configured. */
export async function startSnapshotSide(parts: SnapshotSideParts): Promise<SnapshotSide> {
  const periodic = await startSnapshotFiles(parts);
  const bucket = await startBucketSnapshots(parts);
  return {
    async close() {
      await periodic?.close();
      await bucket?.close();
    },
  };
}

async function startSnapshotFiles({ config, store, metrics, log }: SnapshotSideParts): Promise<PeriodicSnapshots | null> {
  if (config.snapshotDir === null) return null;
  // Loaded only here: the snapshot writer and its YAML export (2-3 MB of memory with the YAML library) wait for --snapshot-dir.
  const { startPeriodicSnapshots } = await import('../snapshot/periodic');
  return startPeriodicSnapshots({
    store,
    dir: config.snapshotDir,
    intervalMs: config.snapshotIntervalMs,
    apisixPrefix: config.apisixPrefix,
    log: log.child({ component: 'mirror' }),
    onSnapshot: (result, revision) => {
      metrics.snapshots.inc({ result });
      if (revision !== undefined) metrics.snapshotRevision.set(revision);
    },
  });
}

/** Published snapshots: fetched only while etcd is lost and the mirror is empty or older; published while it moves. */
async function startBucketSnapshots({ config, store, mirror, liveness, scope, metrics, log, clusterRevision }: SnapshotSideParts): Promise<SnapshotSide | null> {
  if (config.snapshotUrl === null) return null;
  // Loaded only here: the object store's SDK is most of a proxy's code, and most proxies use no bucket.
  const [{ openSnapshotBucket }, { startSnapshotFallback }, { startSnapshotPublisher }, { objectStoreScratch }, { loadSnapshotSigner, loadTrustedKeys, publisherTrust }] =
    await Promise.all([
      import('../objectstore/bucket'),
      import('../objectstore/fallback'),
      import('../objectstore/publisher'),
      import('../objectstore/scratch'),
      import('../objectstore/snapshot-keys'),
    ]);
  const bucket = openSnapshotBucket(config.snapshotUrl, config.objectStore);
  const objectStoreLog = log.child({ component: 'objectstore' });
  const scratchDir = await objectStoreScratch(config.dataDir);
  // The key files were checked with the configuration; read once here (a new key takes a restart).
  const trustedKeys = loadTrustedKeys(config.snapshotVerifyKeys);
  const signer = config.snapshotSignKey === null ? null : loadSnapshotSigner(config.snapshotSignKey);
  const fallback = startSnapshotFallback({ bucket, store, scratchDir, mirror, liveness, scope: () => scope.describe(), trustedKeys, maxBytes: config.snapshotMaxBytes, metrics, log: objectStoreLog });
  const publisher = !config.snapshotPublish
    ? null
    : startSnapshotPublisher({
        bucket,
        store,
        scratchDir,
        intervalMs: config.snapshotIntervalMs,
        keep: config.snapshotKeep,
        apisixPrefix: config.apisixPrefix,
        signer,
        trust: publisherTrust(signer, trustedKeys),
        metrics,
        log: objectStoreLog,
        clusterRevision,
      });
  return {
    async close() {
      fallback.close();
      await publisher?.close();
      bucket.close();
    },
  };
}
