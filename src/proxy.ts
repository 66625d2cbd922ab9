import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { Metadata, type Server as GrpcServer } from '@grpc/grpc-js';
import { ETCD_ERRORS } from './etcd/errors';
import { createCore } from './api/core';
import { followMirror } from './api/mirror-reads';
import { ResponseCache } from './api/response-cache';
import { createGrpcServer, grpcConnections } from './grpc/server';
import { createStreamTracker } from './api/stream-tracker';
import { advertisedUrlFor, ConfigError, formatHostPort, type ProxyConfig } from './config';
import { createHttpGateway, createMetricsServer } from './gateway/http-gateway';
import { listenForBoth } from './listener/protocol-listener';
import { trackHttpConnections, type HttpConnections } from './listener/http-connections';
import type { Logger } from './log';
import type { Metrics } from './metrics';
import type { HostPort } from './etcd/endpoint';
import { createUpstreamPool } from './upstream/pool';
import { createLiveness } from './upstream/liveness';
import { createInstanceId, viaInterceptor } from './upstream/loop-guard';
import { createMembership, initialEndpoints } from './upstream/membership';
import { observePool, upstreamCallCounter } from './upstream/pool-metrics';
import { startMirror } from './mirror/mirror';
import { MirroredRanges } from './mirror/mirrored-ranges';
import { AuthDirectory } from './auth/directory';
import { OFFLINE_LOGINS_FILE, OfflineLogins } from './auth/offline-logins';
import { JwtVerifier } from './auth/jwt';
import { CompactionCheck } from './mirror/compaction-check';
import { LeaderSentinel } from './upstream/leader-sentinel';
import { UpstreamIdentity } from './upstream/identity';
import { ReadBarrier } from './mirror/read-barrier';
import { startStoreMaintenance } from './mirror/maintenance';
import { isCompactedUpstream } from './mirror/compaction-tracker';
import { startConsistencyChecks } from './mirror/consistency-check';
import { openStore } from './store/store';
import { startPeriodicSnapshots } from './snapshot/periodic';
import { openSnapshotBucket } from './objectstore/bucket';
import { startSnapshotFallback } from './objectstore/fallback';
import { startSnapshotPublisher } from './objectstore/publisher';
import { upstreamCredentialsBuilder, upstreamTlsFiles, watchUpstreamCredentials } from './tls/upstream';
import { serverOptionsBuilder, serverTlsFiles, watchServerContext } from './tls/server';
import { diffConfig, type ConfigChanges, type LiveSetting } from './config-diff';
import { setLogLevel } from './log';
import { WatchHub } from './watch/hub';
import { createWritePolicy } from './api/write-policy';
import { readiness } from './mirror/readiness';
import { AuthGate } from './mirror/auth-gate';
import { countingInterceptor } from './upstream/call-reason';
import { GrayscaleView } from './grayscale/view';
import { applyGrayscaleSettings } from './grayscale/settings-change';
import { grayscaleReport } from './grayscale/report';

export interface RunningProxy {
  /** The client port actually bound (port 0 in the config picks a free one). */
  readonly address: HostPort;
  /** The --metrics-addr listener, when configured. */
  readonly metricsAddress: HostPort | null;
  /**
   * Graceful stop: stop accepting, end open streams with UNAVAILABLE so
   * clients reconnect elsewhere, let unary calls finish within the grace
   * period, then cut what is left.
   */
  close(): Promise<void>;
  /**
   * Takes over a reloaded configuration without closing connections or
   * watches: member discovery, mode, log level and TLS files change in place;
   * what needs a restart is logged and keeps its old value.
   */
  reconfigure(next: ProxyConfig): ConfigChanges;
}

export interface ProxyDeps {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** Wires every part together and starts listening. */
export async function startProxy({ config, log, metrics }: ProxyDeps): Promise<RunningProxy> {
  await mkdir(config.dataDir, { recursive: true });
  const store = openStore(config.dataDir, { log: log.child({ component: 'store' }) });
  // Marks every upstream call, so a call that comes back to this proxy is refused, not forwarded again.
  const instanceId = createInstanceId();
  // What a reload changes in place; everything else reads the config it started with.
  const running = { config, mode: config.mode };
  const upstreamLog = log.child({ component: 'upstream' });
  const upstreamCredentials = watchUpstreamCredentials(config.upstreamTls, upstreamLog);
  const pool = createUpstreamPool(initialEndpoints(config.discovery, config.endpoints, store), upstreamLog, {
    interceptors: [countingInterceptor(upstreamCallCounter(metrics)), viaInterceptor(instanceId)],
    tls: upstreamCredentials,
  });
  observePool(pool, metrics);
  const membership = createMembership({
    source: config.discovery,
    endpoints: config.endpoints,
    syncIntervalMs: config.syncIntervalMs,
    tls: config.upstreamTls,
    pool,
    store,
    log: upstreamLog,
    metrics: {
      refreshed: (result) => metrics.memberListRefreshes.inc({ result }),
      selfDropped: () => metrics.loopEndpointsDropped.inc(),
    },
  });
  const liveness = createLiveness(pool, config.upstreamTimeoutMs, upstreamLog, { selfDetected: (member) => membership.dropSelf(member) });
  metrics.upstreamUp.set(1);
  liveness.on('lost', () => metrics.upstreamUp.set(0));
  liveness.on('back', () => metrics.upstreamUp.set(1));
  const mirrorLog = log.child({ component: 'mirror' });
  const ranges = MirroredRanges.fromPrefixes(config.mirrorPrefixes.map((prefix) => Buffer.from(prefix)));
  const auth = new AuthGate(mirrorLog, (required) => metrics.upstreamAuthRequired.set(required ? 1 : 0), config.upstreamUser !== null);
  const identity = new UpstreamIdentity(config.upstreamUser, mirrorLog, (enabled) => (enabled ? auth.loginSeen() : auth.loginRefusedAsDisabled()));
  auth.startProbing(() => pool.candidates()[0]?.client);
  const grayscaleLog = log.child({ component: 'grayscale' });
  const grayscale = new GrayscaleView(config.grayscale, grayscaleLog, () => metrics.grayscaleMalformedMarks.inc());
  applyGrayscaleSettings(store, grayscale, config.grayscale, grayscaleLog);
  const countWithheld = (): void => metrics.grayscaleWithheldKeys.set(store.withheldCount());
  countWithheld();
  const mirror = startMirror({ store, pool, liveness, log: mirrorLog, ranges, auth, identity, onRevision: (revision) => metrics.mirrorRevision.set(revision),
    grayscale,
    onWithheld: countWithheld,
    onWatchStream: (delta) => metrics.upstreamWatchStreams.inc(delta),
    onFailover: () => metrics.upstreamFailovers.inc({ kind: 'mirror_watch' }),
    onReconnectDelay: (ms) => metrics.mirrorReconnectDelay.observe(ms / 1000),
    listBytesPerSecond: config.listBytesPerSecond,
  });
  // After startMirror: it may have discarded what the data dir held.
  metrics.mirrorRevision.set(store.meta().revision);
  if (store.meta().revision > 0) mirrorLog.info({ revision: store.meta().revision }, 'mirror opened: serving from disk');
  mirror.on('relisted', () => metrics.mirrorRelists.inc());
  mirror.on('adopted', countWithheld);
  mirror.on('discarded', countWithheld);
  mirror.on('rederived', countWithheld);
  const watchHub = new WatchHub(store, mirror, (events) => metrics.watchEventsReplayed.inc(events));
  const barrier = new ReadBarrier(pool, ranges.probeKey(), identity, () => metrics.readBarrierCalls.inc());
  const consistency = startConsistencyChecks({ store, pool, mirror, ranges, metrics, log: mirrorLog, intervalMs: config.consistencyCheckIntervalMs, bytesPerSecond: config.consistencyCheckBytesPerSecond, identity, grayscale });
  const isCompacted = (revision: number): Promise<boolean | undefined> => isCompactedUpstream(pool, revision, ranges.probeKey(), identity);
  const maintenance = startStoreMaintenance(store, config.history, metrics, mirrorLog, isCompacted);
  // Once etcd is found compacted past what the log holds, maintenance learns where and prunes the log to match.
  const offlineLogins = config.authOfflineLogin ? await OfflineLogins.open(join(config.dataDir, OFFLINE_LOGINS_FILE), config.authOfflineMaxAgeMs, mirrorLog) : null;
  const jwt = config.authJwtPubKey === null ? null : jwtVerifier(config.authJwtPubKey);
  const directory = new AuthDirectory(pool, config.authRefreshIntervalMs, mirrorLog, () => liveness.isLost(), metrics, offlineLogins, jwt);
  const compaction = new CompactionCheck(isCompacted, () => void maintenance.followCompactionNow());
  const snapshots =
    config.snapshotDir === null
      ? null
      : startPeriodicSnapshots({
          store,
          dir: config.snapshotDir,
          intervalMs: config.snapshotIntervalMs,
          apisixPrefix: config.apisixPrefix,
          log: mirrorLog,
          onSnapshot: (result, revision) => {
            metrics.snapshots.inc({ result });
            if (revision !== undefined) metrics.snapshotRevision.set(revision);
          },
        });
  // Published snapshots: fetched only while etcd is lost and the mirror is empty or older; published while it moves.
  const bucket = config.snapshotUrl === null ? null : openSnapshotBucket(config.snapshotUrl, config.objectStore);
  const objectStoreLog = log.child({ component: 'objectstore' });
  const fallback = bucket === null ? null : startSnapshotFallback({ bucket, store, mirror, liveness, scope: ranges.describe(), metrics, log: objectStoreLog });
  const publisher =
    bucket === null || !config.snapshotPublish
      ? null
      : startSnapshotPublisher({ bucket, store, intervalMs: config.snapshotIntervalMs, keep: config.snapshotKeep, apisixPrefix: config.apisixPrefix, metrics, log: objectStoreLog });
  const streams = createStreamTracker();
  const responseCache = new ResponseCache(config.responseCacheBytes);
  followMirror(responseCache, mirror, metrics);
  let advertiseClientUrl = config.advertiseClientUrl ?? '';
  const core = createCore({
    pool,
    leader: new LeaderSentinel(pool),
    metrics,
    log: log.child({ component: 'grpc' }),
    streams,
    advertiseClientUrl: () => advertiseClientUrl,
    writes: createWritePolicy({ mode: () => running.mode, liveness, mirror, ranges, metrics }),
    mode: () => running.mode,
    watchHub: { hub: watchHub, progressNotifyIntervalMs: config.watchProgressNotifyIntervalMs, bufferBytes: config.watchBufferBytes },
    mirrorReads: { store, mirror, ranges, liveness, barrier, compaction, directory, offlineLogins, auth, staleReads: config.staleReads, cache: responseCache, grayscale, metrics, log: mirrorLog },
  }, { instanceId });
  const grpc = createGrpcServer(core, log.child({ component: 'grpc' }));
  const gateway = createHttpGateway({
    grayscale: () => grayscaleReport(grayscale, store),
    metrics,
    pool,
    log: log.child({ component: 'gateway' }),
    core,
    // Read on each refusal from the running configuration, which a reload replaces.
    errorPolicy: {
      get writeRejectStatus() {
        return running.config.writeRejectHttpStatus;
      },
    },
    upstreamLost: () => liveness.isLost(),
    readiness: () => readiness({ mirror, liveness, staleReads: config.staleReads }),
  });
  const http = gateway.server;
  const httpConnections = trackHttpConnections(http);
  const serverTls = config.serverTls === null ? null : watchServerContext(config.serverTls, log.child({ component: 'tls' }));
  const listener = await listenForBoth(
    config.listenAddr,
    grpcConnections(grpc, gateway.http2Request, () => metrics.grpcConnectionsMoved.inc()),
    http,
    log,
    serverTls === null
      ? null
      : { options: () => serverTls.current(), requireClientCert: config.serverTls?.trustedCaFile != null, on: (event, listener) => serverTls.on(event, listener) },
  );
  advertiseClientUrl = advertisedUrlFor(config.advertiseClientUrl, listener.address, serverTls !== null);
  membership.start({ listen: listener.address, advertiseClientUrl });
  const metricsHttp = config.metricsAddr === null ? null : createMetricsServer(metrics, log);
  const metricsConnections = metricsHttp === null ? null : trackHttpConnections(metricsHttp);
  const metricsServer = metricsHttp === null || config.metricsAddr === null ? null : await listenHttp(metricsHttp, config.metricsAddr);
  log.info(
    {
      listen: formatHostPort(listener.address),
      metrics: metricsServer === null ? null : formatHostPort(metricsServer.address),
      advertiseClientUrl,
      dataDir: config.dataDir,
    },
    'etcd-cache-proxy serving',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= shutdown();
    return closing;
  };
  const shutdown = async (): Promise<void> => {
    log.info({ openStreams: streams.size }, 'shutting down');
    listener.stopAccepting();
    listener.destroyUndecided();
    streams.closeAll({ ...ETCD_ERRORS.shuttingDown, metadata: new Metadata() });
    await Promise.all([
      shutdownGrpc(grpc, config.shutdownGraceMs, log),
      closeHttp(http, httpConnections, config.shutdownGraceMs),
      metricsServer === null || metricsConnections === null ? Promise.resolve() : closeHttp(metricsServer.server, metricsConnections, config.shutdownGraceMs),
    ]);
    membership.close();
    liveness.close();
    maintenance.close();
    consistency.close();
    await snapshots?.close();
    fallback?.close();
    await publisher?.close();
    bucket?.close();
    auth.close();
    await mirror.close();
    await maintenance.runOnce();
    await store.close();
    await pool.close();
    upstreamCredentials.close();
    serverTls?.close();
    log.info('stopped');
  };

  const reconfigure = (next: ProxyConfig): ConfigChanges => {
    const changes = diffConfig(running.config, next);
    const applied: LiveSetting[] = [];
    const refused: string[] = [];
    for (const setting of changes.live) {
      try {
        if (setting === 'mode') running.mode = next.mode;
        else if (setting === 'logLevel') setLogLevel(log, next.logLevel);
        else if (setting === 'upstreamTls') upstreamCredentials.retarget(upstreamTlsFiles(next.upstreamTls), upstreamCredentialsBuilder(next.upstreamTls));
        else if (setting === 'serverTls' && next.serverTls !== null) serverTls?.retarget(serverTlsFiles(next.serverTls), serverOptionsBuilder(next.serverTls));
        else if (setting === 'grayscale') {
          const before = new GrayscaleView(running.config.grayscale, grayscaleLog);
          applyGrayscaleSettings(store, grayscale, next.grayscale, grayscaleLog, { mirror, before });
        }
        applied.push(setting);
      } catch (error) {
        refused.push(setting);
        log.error({ setting, err: error instanceof Error ? error.message : String(error) }, 'reloaded setting does not load; keeping the one in use');
      }
    }
    if (changes.live.some((s) => s === 'endpoints' || s === 'discovery' || s === 'syncIntervalMs' || s === 'upstreamTls')) {
      membership.reconfigure({ source: next.discovery, endpoints: next.endpoints, syncIntervalMs: next.syncIntervalMs, tls: next.upstreamTls });
    }
    // A setting that did not load keeps its old value, so a later reload compares against that.
    running.config = {
      ...next,
      ...(refused.includes('upstreamTls') ? { upstreamTls: running.config.upstreamTls } : {}),
      ...(refused.includes('serverTls') ? { serverTls: running.config.serverTls } : {}),
      ...Object.fromEntries(changes.needRestart.map((key) => [key, running.config[key as keyof ProxyConfig]])),
    };
    log.info({ applied, needRestart: changes.needRestart, refused }, 'configuration reloaded');
    return { live: applied, needRestart: changes.needRestart };
  };

  return { address: listener.address, metricsAddress: metricsServer?.address ?? null, close, reconfigure };
}

async function listenHttp(server: HttpServer, address: HostPort): Promise<{ server: HttpServer; address: HostPort }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  return { server, address: { host: address.host, port: typeof bound === 'object' && bound !== null ? bound.port : address.port } };
}

function shutdownGrpc(server: GrpcServer, graceMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log.warn({ graceMs }, 'grace period over, cutting remaining calls');
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The server stops taking connections; the ones it has end as their responses finish, or at the end of the grace period. */
async function closeHttp(server: HttpServer, connections: HttpConnections, graceMs: number): Promise<void> {
  // The client port's server never listened itself (the protocol listener owns the port): nothing to close there.
  if (server.listening) server.close();
  await connections.drain(graceMs);
}

/** etcd's JWT public key, or a start-up error that names the file. */
function jwtVerifier(file: string): JwtVerifier {
  try {
    return new JwtVerifier(readFileSync(file));
  } catch (error) {
    throw new ConfigError([`--auth-jwt-pub-key ${file}: ${error instanceof Error ? error.message : String(error)}`]);
  }
}
