import { hostname } from 'node:os';
import { RELOAD, type ReloadParts } from '../reload-table';
import { GrayscaleView } from '../grayscale/view';
import { isCompactedUpstream } from '../mirror/compaction-tracker';
import { startConsistencyChecks } from '../mirror/consistency-check';
import { applyGrayscaleSettings } from '../mirror/grayscale-settings';
import { startStoreMaintenance } from '../mirror/store-maintenance';
import { openStore } from '../store/store';
import { createInstanceId } from '../upstream/loop-guard';
import { clusterRevision } from '../upstream/member-look';
import { TierRegistration } from '../upstream/tier-registration';
import { startKeptMirror } from './kept-mirror';
import { buildSharedParts } from './shared-parts';
import type { MirrorKeeper, ProxyDeps } from './sides';
import { startSnapshotSide } from './snapshot-side';
import { startUpstreamSide } from './upstream-side';

/** The mirror and everything that keeps it: the store, the members, liveness, maintenance, checks, snapshots. */
export async function startMirrorKeeper({ config, log, metrics }: ProxyDeps, instanceId = createInstanceId()): Promise<MirrorKeeper> {
  const store = openStore(config.dataDir, { log: log.child({ component: 'store' }) });
  const upstreamLog = log.child({ component: 'upstream' });
  const mirrorLog = log.child({ component: 'mirror' });
  const grayscaleLog = log.child({ component: 'grayscale' });
  const { upstreamCredentials, pool, auth, identity, grayscale, scope } = buildSharedParts({ config, store, log, metrics, instanceId, keepsMirror: true, upstreamLog });
  const { membership, liveness } = startUpstreamSide(config, pool, store, metrics, upstreamLog);
  auth.startProbing(() => pool.candidates()[0]?.client);
  applyGrayscaleSettings(store, grayscale, config.grayscale, grayscaleLog);
  const { mirror, onRevision } = startKeptMirror({ config, store, pool, liveness, scope, auth, identity, grayscale, metrics, log: mirrorLog });
  const consistency = startConsistencyChecks({ store, pool, mirror, ranges: scope, metrics, log: mirrorLog, intervalMs: config.consistencyCheckIntervalMs, bytesPerSecond: config.consistencyCheckBytesPerSecond, identity, grayscale });
  // Once etcd is found compacted past what the log holds, maintenance learns where and prunes the log to match.
  const isCompacted = (revision: number): Promise<boolean | undefined> => isCompactedUpstream(pool, revision, scope.probeKey(), identity);
  const maintenance = startStoreMaintenance(store, config.history, metrics, mirrorLog, isCompacted);
  // --resolver-prefix: registered by the one process that keeps the mirror (one lease per proxy, whatever --workers is), once the port is bound.
  const registration = config.resolver === null ? null : new TierRegistration({ resolver: config.resolver, pool, identity, name: hostname(), log: upstreamLog });
  const snapshots = await startSnapshotSide({ config, store, mirror, liveness, scope, metrics, log, clusterRevision: () => clusterRevision(pool, 'snapshot') });

  let current = config;
  const reloadParts: ReloadParts = {
    log,
    upstreamCredentials,
    membership,
    grayscale: (nextSettings, beforeSettings) =>
      applyGrayscaleSettings(store, grayscale, nextSettings, grayscaleLog, { mirror, before: new GrayscaleView(beforeSettings, grayscaleLog) }),
  };
  return {
    side: {
      store,
      pool,
      liveness,
      mirror,
      auth,
      identity,
      grayscale,
      scope,
      instanceId,
      followCompaction: () => void maintenance.followCompactionNow(),
      listening: (self) => {
        membership.start(self);
        if (registration !== null && config.advertiseClientUrl === null) {
          upstreamLog.warn({ registered: self.advertiseClientUrl }, 'tier registration: --advertise-client-url is not set, so the URL registered is derived from the listen address; other machines of the tier may not reach it');
        }
        registration?.start(self.advertiseClientUrl);
      },
    },
    onRevision,
    reconfigure(next, setting) {
      RELOAD[setting](reloadParts, next, current);
      current = { ...current, [setting]: next[setting] };
    },
    async leaveTier() {
      await registration?.close();
    },
    async close() {
      // First (if leaveTier() was not called), while the pool still reaches etcd: the lease is revoked, so the tier stops listing this proxy now.
      await registration?.close();
      membership.close();
      liveness.close();
      maintenance.close();
      consistency.close();
      await snapshots.close();
      auth.close();
      await mirror.close();
      await maintenance.runOnce();
      await store.close();
      await pool.close();
      upstreamCredentials.close();
    },
  };
}
