import { hostname } from 'node:os';
import { Metadata } from '@grpc/grpc-js';
import { createCore, type Core } from '../core/core';
import { followMirror } from '../core/mirror-reads';
import { ResponseCache } from '../core/response-cache';
import { RevisionFloor } from '../core/revision-floor';
import { createStreamTracker, type StreamTracker } from '../core/stream-tracker';
import { createWritePolicy } from '../core/write-policy';
import { TierMembers } from '../core/tier-members';
import { ETCD_ERRORS } from '../etcd/errors';
import { createHttpGateway } from '../gateway/http-gateway';
import { grayscaleReport } from '../grayscale/grayscale-report';
import { createGrpcServer, grpcConnections } from '../grpc/server';
import { trackHttpConnections } from '../listener/http-connections';
import { CompactionCheck } from '../mirror/compaction-check';
import { isCompactedUpstream } from '../mirror/compaction-tracker';
import { ReadBarrier } from '../mirror/read-barrier';
import { readiness, upstreamReport } from '../mirror/readiness';
import { TierStaleness } from '../upstream/tier-stale';
import { RELOAD } from '../reload-table';
import { formatHostPort } from '../settings/values';
import type { ProxyConfig } from '../settings/types';
import { LeaderSentinel } from '../upstream/leader-sentinel';
import { WatchHub } from '../watch/hub';
import { closeHttp, openClientPort, openMetricsPort, shutdownGrpc } from './client-port';
import { startServingAuth, type ServingAuth } from './serving-auth';
import type { HandedPort, MirrorSide, ProxyDeps, ServingSide } from './sides';

/**
 * The client port (gRPC and the JSON gateway on one listener), and the optional metrics port, served from `side`;
 * with `handedPort`, connections come from the process that listens instead.
 */
export async function startServing(deps: ProxyDeps, side: MirrorSide, handedPort?: HandedPort): Promise<ServingSide> {
  const { config, log, metrics, scrape } = deps;
  const { store, pool, liveness, auth, grayscale, scope } = side;
  let current = config;
  const authParts = await startServingAuth(config, side, metrics, log.child({ component: 'mirror' }));
  const streams = createStreamTracker();
  let advertiseClientUrl = config.advertiseClientUrl ?? '';
  // A worker's is the one the primary's messages reach (workers/worker.ts); one process has its own.
  const tierStale = side.tier ?? new TierStaleness();
  const barrier = new ReadBarrier(pool, () => scope.probeKey(), side.identity, () => metrics.readBarrierCalls.inc(), (headers) => tierStale.noteAnswer(headers));
  // While the tier answers stale, the barrier's call asks it again each second whether it still is.
  tierStale.recheckWith(() => barrier.upstreamRevision());
  const floor = new RevisionFloor();
  const core = buildCore(deps, side, authParts, streams, () => current, () => advertiseClientUrl, { barrier, floor, tierStale });
  const grpc = createGrpcServer(core, log.child({ component: 'grpc' }));
  const gateway = createHttpGateway({
    scrape,
    grayscale: {
      report: () => grayscaleReport(grayscale, store),
      authEnabled: () => auth.isEnabled(),
      decide: (metadata, ranges) => authParts.directory.decide(metadata, ranges),
    },
    metrics,
    pool,
    log: log.child({ component: 'gateway' }),
    core,
    // Read on each refusal from the running configuration, which a reload replaces.
    errorPolicy: {
      get writeRejectStatus() {
        return current.writeRejectHttpStatus;
      },
    },
    upstreamLost: () => liveness.isLost(),
    readiness: () =>
      readiness({
        mirror: side.mirror,
        liveness,
        staleReads: config.staleReads,
        unmirrored: () => scope.unmirrored,
        upstream: () => upstreamReport(pool, tierStale, floor, side.mirror),
      }),
  });
  const httpConnections = trackHttpConnections(gateway.server);
  const connections = grpcConnections(grpc, gateway.http2Request, () => metrics.grpcConnectionsMoved.inc());
  const port = await openClientPort(config, connections, gateway.server, log, handedPort);
  advertiseClientUrl = port.advertiseClientUrl;
  side.listening({ listen: port.listener.address, advertiseClientUrl });
  const metricsPort = await openMetricsPort(config, metrics, log, scrape);
  log.info(
    { listen: formatHostPort(port.listener.address), metrics: metricsPort === null ? null : formatHostPort(metricsPort.address), advertiseClientUrl, dataDir: config.dataDir },
    'etcd-cache-proxy serving',
  );

  return {
    address: port.listener.address,
    metricsAddress: metricsPort?.address ?? null,
    reconfigure(next, setting) {
      RELOAD[setting]({ serverTls: port.serverTls }, next, current);
      current = { ...current, [setting]: next[setting] };
    },
    async close() {
      log.info({ openStreams: streams.size }, 'shutting down');
      tierStale.close();
      port.listener.stopAccepting();
      port.listener.destroyUndecided();
      streams.closeAll({ ...ETCD_ERRORS.shuttingDown, metadata: new Metadata() });
      await Promise.all([
        shutdownGrpc(grpc, config.shutdownGraceMs, log),
        closeHttp(gateway.server, httpConnections, config.shutdownGraceMs),
        metricsPort?.close(config.shutdownGraceMs),
      ]);
      port.serverTls?.close();
    },
  };
}

/** The transport-neutral core, and what its reads and watches are served from. */
function buildCore(
  { config, log, metrics }: ProxyDeps,
  side: MirrorSide,
  { directory, offlineLogins }: ServingAuth,
  streams: StreamTracker,
  current: () => ProxyConfig,
  advertiseClientUrl: () => string,
  { barrier, floor, tierStale }: { readonly barrier: ReadBarrier; readonly floor: RevisionFloor; readonly tierStale: TierStaleness },
): Core {
  const { store, pool, liveness, mirror, auth, identity, grayscale, instanceId, scope } = side;
  const mirrorLog = log.child({ component: 'mirror' });
  const watchHub = new WatchHub(store, mirror, (events) => metrics.watchEventsReplayed.inc(events));
  const isCompacted = (revision: number): Promise<boolean | undefined> => isCompactedUpstream(pool, revision, scope.probeKey(), identity);
  const compaction = new CompactionCheck(isCompacted, () => side.followCompaction());
  const responseCache = new ResponseCache(config.responseCacheBytes);
  followMirror(responseCache, mirror, metrics);
  const tierMembers =
    config.resolver === null
      ? undefined
      : new TierMembers({
          prefix: config.resolver.prefix,
          store,
          mirrored: (start, end) => mirror.hasData() && scope.coversRequest(start, end),
          pool,
          identity,
          advertiseClientUrl,
          name: hostname(),
          log: log.child({ component: 'grpc' }),
        });
  // The mirror starts again below every revision handed out before a restore: mirror reads must not wait for those.
  mirror.on('discarded', () => floor.reset());
  mirror.on('relisted', () => floor.mirrorRelisted());
  mirror.on('adopted', () => floor.mirrorAdopted());
  return createCore(
    {
      pool,
      leader: new LeaderSentinel(pool),
      metrics,
      log: log.child({ component: 'grpc' }),
      streams,
      advertiseClientUrl,
      ...(tierMembers === undefined ? {} : { tierMembers }),
      writes: createWritePolicy({ mode: () => current().mode, liveness, mirror, ranges: scope, metrics }),
      mode: () => current().mode,
      watchHub: { hub: watchHub, progressNotifyIntervalMs: config.watchProgressNotifyIntervalMs, bufferBytes: config.watchBufferBytes },
      mirrorReads: { store, mirror, ranges: scope, liveness, barrier, tierStale, compaction, directory, offlineLogins, auth, staleReads: config.staleReads, cache: responseCache, grayscale, floor, metrics, log: mirrorLog },
    },
    { instanceId },
  );
}
