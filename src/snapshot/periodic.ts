import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log';
import type { MirrorStore } from '../store/store';
import { isLeftoverOf, writeAtomically } from '../files/atomic-file';
import { PRIVATE_DIR_MODE } from '../files/private-dir';
import { toApisixYaml } from './apisix';
import { saveFromStore } from './save';

export const SNAPSHOT_FILE = 'etcd-cache-proxy.snapshot.jsonl';
export const APISIX_FILE = 'apisix.yaml';

export interface PeriodicSnapshotDeps {
  readonly store: MirrorStore;
  readonly dir: string;
  readonly intervalMs: number;
  readonly apisixPrefix: string;
  readonly log: Logger;
  readonly onSnapshot: (result: 'ok' | 'error', revision?: number) => void;
}

export interface PeriodicSnapshots {
  /** One snapshot now (when the mirror moved since the last one). */
  runOnce(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Every interval, the mirror is written to `<dir>/etcd-cache-proxy.snapshot.jsonl`
 * and the APISIX configuration under its prefix to `<dir>/apisix.yaml`, each
 * atomically: a crash mid-write leaves the previous files whole. Nothing is
 * written while the mirror has not moved since the last snapshot.
 */
export function startPeriodicSnapshots({ store, dir, intervalMs, apisixPrefix, log, onSnapshot }: PeriodicSnapshotDeps): PeriodicSnapshots {
  let lastRevision = 0;
  let running: Promise<void> | null = null;
  let closed = false;

  const snapshot = async (): Promise<void> => {
    const revision = store.meta().revision;
    if (revision === 0 || revision === lastRevision) return;
    try {
      const saved = await saveFromStore(store, join(dir, SNAPSHOT_FILE), 'mirror');
      const view = store.view();
      let exported;
      try {
        exported = toApisixYaml(view.records, apisixPrefix);
      } finally {
        view.done();
      }
      await writeAtomically(join(dir, APISIX_FILE), (out) => out.write(exported.yaml));
      lastRevision = saved.revision;
      onSnapshot('ok', saved.revision);
      log.debug({ revision: saved.revision, keys: saved.keys, apisix: exported.counts }, 'snapshot written');
    } catch (error) {
      onSnapshot('error');
      log.error({ err: error, dir }, 'snapshot failed; the previous one is kept');
    }
  };
  const runOnce = (): Promise<void> => {
    running ??= snapshot().finally(() => (running = null));
    return running;
  };

  const prepare = async (): Promise<void> => {
    // A directory made here is the proxy user's alone; one the operator made keeps its mode (its files are 0600).
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    // Temporary files of a writer killed mid-snapshot are of no use to anyone.
    const leftovers = (await readdir(dir)).filter((e) => isLeftoverOf(SNAPSHOT_FILE, e) || isLeftoverOf(APISIX_FILE, e));
    await Promise.all(leftovers.map((e) => rm(join(dir, e), { force: true })));
  };
  // The first snapshot right away: a mirror opened from disk is worth saving before any interval passes.
  running = prepare()
    .then(snapshot, (error: unknown) => {
      onSnapshot('error');
      log.error({ err: error, dir }, 'snapshot dir not usable');
    })
    .finally(() => (running = null));
  const timer = setInterval(() => {
    if (!closed) void runOnce();
  }, intervalMs);
  timer.unref();

  return {
    runOnce,
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
    },
  };
}
