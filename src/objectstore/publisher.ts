import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyValueFields } from '../etcd/records';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { fullJitterDelayMs } from '../mirror/reconnect-delay';
import { toApisixYaml } from '../snapshot/apisix';
import { openSnapshot } from '../snapshot/format';
import { saveFromStore } from '../snapshot/save';
import type { MirrorStore } from '../store/store';
import { ObjectStoreError, type SnapshotBucket } from './bucket';
import type { SnapshotSigner, TrustedKeys } from './manifest-signature';
import { publishSnapshot, type PublishResult } from './publish';

export interface SnapshotPublisherDeps {
  readonly bucket: SnapshotBucket;
  readonly store: MirrorStore;
  /** Where the snapshot is written before upload (objectStoreScratch). */
  readonly scratchDir: string;
  readonly intervalMs: number;
  readonly keep: number;
  /** Where APISIX's configuration lives in the keyspace, for apisix.yaml. */
  readonly apisixPrefix: string;
  /** --snapshot-sign-key; null: manifests are published unsigned (warned of at start). */
  readonly signer: SnapshotSigner | null;
  /** What `latest` may name (snapshot-keys.ts publisherTrust). */
  readonly trust: TrustedKeys | null;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** etcd's revision now, as a majority of its members tell it (null: not known); see Publication. */
  readonly clusterRevision: () => Promise<number | null>;
}

export interface SnapshotPublisher {
  /** Publishes now if the mirror moved since the last publish (tests, shutdown). */
  runOnce(): Promise<void>;
  close(): Promise<void>;
}

/** A name for this process's objects: publishers never write the same object. */
export function newPublisherId(): string {
  return randomBytes(6).toString('hex');
}

/** A snapshot file and the apisix.yaml made from it, so both are of one revision. */
async function prepare(store: MirrorStore, dir: string): Promise<{ file: string; apisix: (prefix: string) => Promise<string> }> {
  const file = join(dir, 'snapshot.jsonl');
  await saveFromStore(store, file, 'mirror');
  return {
    file,
    async apisix(prefix) {
      const records: KeyValueFields[] = [];
      for await (const record of (await openSnapshot(file)).records()) records.push(record);
      return toApisixYaml(records, prefix).yaml;
    },
  };
}

/**
 * Every interval while the mirror moves, publishes its snapshot and
 * apisix.yaml to the bucket (objectstore/publish.ts). A failure is logged
 * and counted and never touches serving; it is tried again after a growing,
 * jittered delay, at most the interval.
 */
export function startSnapshotPublisher({ bucket, store, scratchDir, intervalMs, keep, apisixPrefix, signer, trust, metrics, log, clusterRevision }: SnapshotPublisherDeps): SnapshotPublisher {
  const publisher = newPublisherId();
  if (signer === null) log.warn('no --snapshot-sign-key: snapshots are published unsigned, and proxies with --snapshot-verify-key refuse them');
  else log.info({ keyId: signer.keyId }, 'published snapshots are signed');
  let publishedRevision = 0;
  let failures = 0;
  let running: Promise<void> | null = null;
  let closed = false;
  let timer: NodeJS.Timeout | null = null;

  const publishOnce = async (): Promise<boolean> => {
    const revision = store.meta().revision;
    if (revision === 0) return true;
    if (revision === publishedRevision) {
      // Nothing new to publish: what is published is still as new as this mirror.
      metrics.snapshotPublishedTimestamp.set(Date.now() / 1000);
      return true;
    }
    const dir = await mkdtemp(join(scratchDir, 'publish-'));
    try {
      const prepared = await prepare(store, dir);
      const reader = await openSnapshot(prepared.file);
      const result: PublishResult = await publishSnapshot(bucket, {
        file: prepared.file,
        header: reader.header,
        apisixYaml: await prepared.apisix(apisixPrefix),
        publisher,
        keep,
        signer,
        trust,
        clusterRevision,
      });
      publishedRevision = Number(reader.header.revision);
      metrics.snapshotUploads.inc({ result: result.kind });
      if (result.kind === 'published') metrics.snapshotUploadBytes.inc(result.bytes);
      metrics.snapshotPublishedRevision.set(Number(result.latest.revision));
      metrics.snapshotPublishedTimestamp.set(Date.now() / 1000);
      log.debug({ result: result.kind, revision: publishedRevision, latest: result.latest.revision }, 'snapshot publish');
      return true;
    } catch (error) {
      const result = error instanceof ObjectStoreError ? error.failure : 'failed';
      metrics.snapshotUploads.inc({ result });
      log.error({ err: error instanceof Error ? error.message : String(error), result }, 'snapshot publish failed; serving goes on');
      return false;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  const schedule = (delayMs: number): void => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = null;
      void runOnce();
    }, delayMs);
    timer.unref();
  };
  const runOnce = (): Promise<void> => {
    running ??= publishOnce()
      .then((ok) => {
        failures = ok ? 0 : failures + 1;
        if (timer === null) schedule(ok ? intervalMs : Math.min(intervalMs, Math.max(1_000, fullJitterDelayMs(failures, 2_000, intervalMs))));
      })
      .finally(() => (running = null));
    return running;
  };
  schedule(0);
  return {
    runOnce,
    async close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      await running;
    },
  };
}
