import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** Snapshots: those written to --snapshot-dir, and those published to and fetched from --snapshot-url. */
export interface SnapshotMetrics {
  readonly snapshots: Counter<'result'>;
  /** The mirror revision of the last snapshot written to --snapshot-dir. */
  readonly snapshotRevision: Gauge;
  /** Snapshots published to --snapshot-url, by result (published, skipped: not newer than latest, or a failure). */
  readonly snapshotUploads: Counter<'result'>;
  readonly snapshotUploadBytes: Counter;
  /** Fetches of the published snapshot while etcd is lost, by result. */
  readonly snapshotFetches: Counter<'result'>;
  readonly snapshotFetchBytes: Counter;
  /** The revision `latest` named after this proxy's last publish, and when that was (for the age alert). */
  readonly snapshotPublishedRevision: Gauge;
  readonly snapshotPublishedTimestamp: Gauge;
}

export function createSnapshotMetrics(registry: Registry): SnapshotMetrics {
  return {
    snapshots: new Counter({
      name: `${METRIC_PREFIX}snapshots_total`,
      help: 'Periodic snapshots written to --snapshot-dir, by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    snapshotRevision: new Gauge({
      name: `${METRIC_PREFIX}snapshot_revision`,
      help: 'Mirror revision of the last snapshot written to --snapshot-dir',
      registers: [registry],
    }),
    snapshotUploads: new Counter({
      name: `${METRIC_PREFIX}snapshot_uploads_total`,
      help: 'Publishes to --snapshot-url, by result: published, skipped (latest is as new), unreachable, denied, missing, failed',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    snapshotUploadBytes: new Counter({
      name: `${METRIC_PREFIX}snapshot_upload_bytes_total`,
      help: 'Bytes of snapshots and apisix.yaml uploaded to --snapshot-url',
      registers: [registry],
    }),
    snapshotFetches: new Counter({
      name: `${METRIC_PREFIX}snapshot_fetches_total`,
      help: 'Fetches of the published snapshot while etcd is unreachable, by result: adopted, none-newer, refused (damaged, truncated, another cluster), bad-signature (with --snapshot-verify-key: unsigned, unknown key, not verifying, or not the file signed), too-large (past --snapshot-max-bytes, not downloaded), unreachable, denied, missing, failed',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    snapshotFetchBytes: new Counter({
      name: `${METRIC_PREFIX}snapshot_fetch_bytes_total`,
      help: 'Bytes of published snapshots downloaded to disk, also of those refused after download',
      registers: [registry],
    }),
    snapshotPublishedRevision: new Gauge({
      name: `${METRIC_PREFIX}snapshot_published_revision`,
      help: 'The revision latest named after this proxy last published (or found it as new)',
      registers: [registry],
    }),
    snapshotPublishedTimestamp: new Gauge({
      name: `${METRIC_PREFIX}snapshot_published_timestamp_seconds`,
      help: 'When this proxy last found latest as new as its mirror, by publishing or because its mirror had not moved (Unix time): an age past a few --snapshot-interval means its publishing stopped',
      registers: [registry],
    }),
  };
}
