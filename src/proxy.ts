import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { Metadata, type Server as GrpcServer } from '@grpc/grpc-js';
import { ETCD_ERRORS } from './etcd/errors';
import { createCore } from './core/core';
import { followMirror } from './core/mirror-reads';
import { ResponseCache } from './core/response-cache';
import { createGrpcServer, grpcConnections } from './grpc/server';
import { createStreamTracker } from './core/stream-tracker';
import { advertisedUrlFor, ConfigError, DEFAULT_ENDPOINTS, formatHostPort, type ProxyConfig } from './config';
import { createHttpGateway, createMetricsServer, type Scrape } from './gateway/http-gateway';
import { listenOn } from './listener/listen';
import { listenForBoth, serveHandedOver, type ProtocolListener } from './listener/protocol-listener';
import { trackHttpConnections, type HttpConnections } from './listener/http-connections';
import type { Logger } from './log';
import type { Metrics } from './metrics';
import type { HostPort } from './etcd/endpoint';
import { createLiveness } from './upstream/liveness';
import { createInstanceId } from './upstream/loop-guard';
import { createMembership } from './upstream/membership';
import { observePool } from './upstream/pool-metrics';
import { startMirror } from './mirror/mirror';
import { MirrorScope } from './mirror/mirror-scope';
import { AuthDirectory, type TokenTeller } from './auth/directory';
import { LoginLimiter, type LoginBudget } from './auth/login-limits';
import { OFFLINE_LOGINS_FILE, OfflineLogins } from './auth/offline-logins';
import { JwtVerifier } from './auth/jwt';
import { CompactionCheck } from './mirror/compaction-check';
import { LeaderSentinel } from './upstream/leader-sentinel';
import { UpstreamLogin } from './auth/upstream-login';
import { ReadBarrier } from './mirror/read-barrier';
import { startStoreMaintenance } from './mirror/store-maintenance';
import { isCompactedUpstream } from './mirror/compaction-tracker';
import { startConsistencyChecks } from './mirror/consistency-check';
import { openStore } from './store/store';
import { startPeriodicSnapshots } from './snapshot/periodic';
import { openSnapshotBucket } from './objectstore/bucket';
import { startSnapshotFallback } from './objectstore/fallback';
import { startSnapshotPublisher } from './objectstore/publisher';
import { objectStoreScratch } from './objectstore/scratch';
import { loadSnapshotSigner, loadTrustedKeys, publisherTrust } from './objectstore/snapshot-keys';
import { watchServerContext } from './tls/server-tls';
import { diffConfig, type ConfigChanges, type LiveSetting } from './config-diff';
import type { MirrorStore } from './store/store';
import type { Liveness } from './upstream/liveness';
import type { UpstreamPool } from './upstream/pool';
import type { Mirror } from './mirror/mirror';
import type { SelfAddresses } from './upstream/loop-guard';
import { buildSharedParts } from './wiring/shared-parts';
import { RELOAD, type ReloadParts } from './reload-table';
import { WatchHub } from './watch/hub';
import { createWritePolicy } from './core/write-policy';
import { readiness } from './mirror/readiness';
import { AuthGate } from './auth/auth-gate';
import { GrayscaleView } from './grayscale/view';
import { applyGrayscaleSettings } from './mirror/grayscale-settings';
import { grayscaleReport } from './grayscale/grayscale-report';

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
  /** What /metrics answers, when not this process's registry alone (workers/). */
  readonly scrape?: Scrape;
}

/**
 * What the serving side (the client port: gRPC, the JSON gateway) needs of
 * the side that keeps the mirror. In one process that is the mirror itself;
 * in a worker process (workers/) the same parts follow the process that
 * keeps it.
 */
export interface MirrorSide {
  readonly store: MirrorStore;
  /** The members forwarded calls go to. */
  readonly pool: UpstreamPool;
  readonly liveness: Liveness;
  readonly mirror: Mirror;
  readonly auth: AuthGate;
  /** Who the proxy's own calls are made as (--user). */
  readonly identity: UpstreamLogin;
  readonly grayscale: GrayscaleView;
  /** The ranges the mirror holds now (what is configured, narrowed to what its user may read). */
  readonly scope: MirrorScope;
  /** Carried by every forwarded call: one that comes back to this proxy is refused, not forwarded again. */
  readonly instanceId: string;
  /** etcd was found compacted past what the log holds: the log is pruned to match. */
  followCompaction(): void;
  /** The client port is bound: member discovery starts (its loop guard needs the address). */
  listening(self: SelfAddresses): void;
  /** With --workers: the tokens each serving process learns, told to the others. */
  readonly tokens?: TokenSharing;
}

export interface TokenSharing {
  /** What this process learned or found out, for the others. */
  readonly tell: TokenTeller;
  /** Takes what the other processes learned or found out. */
  onShared(directory: Pick<AuthDirectory, 'adopt' | 'adoptForget' | 'adoptAuthRevision'>): void;
  /** Offline login attempts are reserved here: the counts are shared by every process. */
  readonly loginBudget: LoginBudget;
}

/** The side that keeps the mirror: one per data dir, whatever serves it. */
export interface MirrorKeeper {
  readonly side: MirrorSide;
  /** Called with M after every commit that moved it. */
  onRevision(listener: (revision: number) => void): void;
  /** Takes over one live setting of a reloaded configuration; throws when it does not load. */
  reconfigure(next: ProxyConfig, setting: LiveSetting): void;
  close(): Promise<void>;
}

/** The client port, served from a MirrorSide. */
export interface ServingSide {
  readonly address: HostPort;
  readonly metricsAddress: HostPort | null;
  reconfigure(next: ProxyConfig, setting: LiveSetting): void;
  close(): Promise<void>;
}

/** Wires every part together and starts listening: the mirror and the client port in this process. */
export async function startProxy({ config, log, metrics }: ProxyDeps): Promise<RunningProxy> {
  const keeper = await startMirrorKeeper({ config, log, metrics });
  let serving: ServingSide;
  try {
    serving = await startServing({ config, log, metrics }, keeper.side);
  } catch (error) {
    await keeper.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await serving.close();
      await keeper.close();
      log.info('stopped');
    })();
    return closing;
  };
  const reconfigurable = createReconfigure(config, log, (next, setting) => {
    keeper.reconfigure(next, setting);
    serving.reconfigure(next, setting);
  });
  return { address: serving.address, metricsAddress: serving.metricsAddress, close, reconfigure: reconfigurable };
}

/**
 * A reload, as every process applies it: each live setting that changed is
 * handed to `apply` (which throws when it does not load); a setting that did
 * not load keeps its old value, so a later reload compares against that.
 */
export function createReconfigure(config: ProxyConfig, log: Logger, apply: (next: ProxyConfig, setting: LiveSetting) => void): (next: ProxyConfig) => ConfigChanges {
  let current = config;
  return (next) => {
    const changes = diffConfig(current, next);
    const applied: LiveSetting[] = [];
    const refused: string[] = [];
    for (const setting of changes.live) {
      try {
        apply(next, setting);
        applied.push(setting);
      } catch (error) {
        refused.push(setting);
        log.error({ setting, err: error instanceof Error ? error.message : String(error) }, 'reloaded setting does not load; keeping the one in use');
      }
    }
    current = {
      ...next,
      ...Object.fromEntries(refused.map((key) => [key, current[key as keyof ProxyConfig]])),
      ...Object.fromEntries(changes.needRestart.map((key) => [key, current[key as keyof ProxyConfig]])),
    };
    log.info({ applied, needRestart: changes.needRestart, refused }, 'configuration reloaded');
    return { live: applied, needRestart: changes.needRestart };
  };
}

/** The mirror and everything that keeps it: the store, the members, liveness, maintenance, checks, snapshots. */
export async function startMirrorKeeper({ config, log, metrics }: ProxyDeps, instanceId = createInstanceId()): Promise<MirrorKeeper> {
  const store = openStore(config.dataDir, { log: log.child({ component: 'store' }) });
  let current = config;
  const upstreamLog = log.child({ component: 'upstream' });
  const { upstreamCredentials, pool, auth, identity, grayscale, scope: ranges } = buildSharedParts({ config, store, log, metrics, instanceId, keepsMirror: true, upstreamLog });
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
  auth.startProbing(() => pool.candidates()[0]?.client);
  const grayscaleLog = log.child({ component: 'grayscale' });
  applyGrayscaleSettings(store, grayscale, config.grayscale, grayscaleLog);
  const countWithheld = (): void => metrics.grayscaleWithheldKeys.set(store.withheldCount());
  countWithheld();
  const revisionListeners = new Set<(revision: number) => void>();
  const mirror = startMirror({ store, pool, liveness, log: mirrorLog, scope: ranges, scopeRefreshMs: config.authRefreshIntervalMs, auth, identity,
    onRevision: (revision) => {
      metrics.mirrorRevision.set(revision);
      for (const listener of revisionListeners) listener(revision);
    },
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
  // A first start with nowhere to copy from serves nothing at all: said once, with what to change.
  liveness.once('lost', () => {
    if (mirror.hasData()) return;
    const urls = config.endpoints.map((endpoint) => endpoint.url);
    const defaulted = config.discovery.kind === 'endpoints' && urls.length === 1 && urls[0] === DEFAULT_ENDPOINTS;
    mirrorLog.warn(
      {
        endpoints: urls,
        hint: auth.isRequired()
          ? config.upstreamUser === null
            ? 'etcd has auth on and the mirror has no user of its own: give --user (a user that may read the mirrored keys) to mirror what it may read'
            : "etcd has auth on and the mirror's user (--user) may read none of the mirrored keys: grant it read permission on them (see notMirrored in /readyz)"
          : defaulted
          ? `--endpoints is its default (${DEFAULT_ENDPOINTS}), where no etcd answers: set --endpoints (or ETCD_CACHE_PROXY_ENDPOINTS) to your cluster's client URLs; 'npm run demo' shows the proxy at work with a throwaway etcd`
          : 'check that these endpoints are etcd client URLs this machine can reach',
      },
      'nothing to serve yet: no etcd member has answered and the mirror holds no copy',
    );
  });
  mirror.on('relisted', () => metrics.mirrorRelists.inc());
  mirror.on('adopted', countWithheld);
  mirror.on('discarded', countWithheld);
  mirror.on('rederived', countWithheld);
  const consistency = startConsistencyChecks({ store, pool, mirror, ranges, metrics, log: mirrorLog, intervalMs: config.consistencyCheckIntervalMs, bytesPerSecond: config.consistencyCheckBytesPerSecond, identity, grayscale });
  const isCompacted = (revision: number): Promise<boolean | undefined> => isCompactedUpstream(pool, revision, ranges.probeKey(), identity);
  // Once etcd is found compacted past what the log holds, maintenance learns where and prunes the log to match.
  const maintenance = startStoreMaintenance(store, config.history, metrics, mirrorLog, isCompacted);
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
  const scratchDir = bucket === null ? '' : await objectStoreScratch(config.dataDir);
  // The key files were checked with the configuration; read once here (a new key takes a restart).
  const trustedKeys = loadTrustedKeys(config.snapshotVerifyKeys);
  const signer = config.snapshotSignKey === null ? null : loadSnapshotSigner(config.snapshotSignKey);
  const fallback =
    bucket === null
      ? null
      : startSnapshotFallback({ bucket, store, scratchDir, mirror, liveness, scope: () => ranges.describe(), trustedKeys, maxBytes: config.snapshotMaxBytes, metrics, log: objectStoreLog });
  const publisher =
    bucket === null || !config.snapshotPublish
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
        });

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
      scope: ranges,
      instanceId,
      followCompaction: () => void maintenance.followCompactionNow(),
      listening: (self) => membership.start(self),
    },
    onRevision: (listener) => revisionListeners.add(listener),
    reconfigure(next, setting) {
      RELOAD[setting](reloadParts, next, current);
      current = { ...current, [setting]: next[setting] };
    },
    async close() {
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
    },
  };
}

/** A client port another process listens on (the primary of --workers), handing this one connections. */
export interface HandedPort {
  readonly address: HostPort;
  /** Takes the function that serves each connection handed over. */
  serve(accept: (socket: Socket) => void): void;
}

/**
 * The client port (gRPC and the JSON gateway on one listener), and the optional metrics port, served from `side`;
 * with `handedPort`, connections come from the process that listens instead.
 */
export async function startServing({ config, log, metrics, scrape }: ProxyDeps, side: MirrorSide, handedPort?: HandedPort): Promise<ServingSide> {
  const { store, pool, liveness, mirror, auth, identity, grayscale, instanceId, scope: ranges } = side;
  const mirrorLog = log.child({ component: 'mirror' });
  let current = config;
  const watchHub = new WatchHub(store, mirror, (events) => metrics.watchEventsReplayed.inc(events));
  const barrier = new ReadBarrier(pool, () => ranges.probeKey(), identity, () => metrics.readBarrierCalls.inc());
  const isCompacted = (revision: number): Promise<boolean | undefined> => isCompactedUpstream(pool, revision, ranges.probeKey(), identity);
  // One process: the counts of offline login attempts are its own; with --workers, the primary's.
  const loginBudget = side.tokens?.loginBudget ?? new LoginLimiter();
  const offlineLogins = config.authOfflineLogin ? await OfflineLogins.open(join(config.dataDir, OFFLINE_LOGINS_FILE), config.authOfflineMaxAgeMs, mirrorLog, loginBudget) : null;
  const jwt = config.authJwtPubKey === null ? null : jwtVerifier(config.authJwtPubKey);
  const directory = new AuthDirectory(pool, config.authRefreshIntervalMs, mirrorLog, () => liveness.isLost(), metrics, offlineLogins, jwt);
  // The tokens the proxy issued during an outage end the moment etcd answers again.
  liveness.on('back', () => directory.upstreamBack());
  // etcd's auth revision, kept in the store with the rest of what etcd said of its auth: a JWT issued
  // before it is refused during an outage after a restart too, and what this process learns is kept.
  directory.adoptAuthRevision(auth.state().authRevision);
  auth.onStateChange((state) => directory.adoptAuthRevision(state.authRevision));
  if (side.tokens !== undefined) {
    directory.tellTo(side.tokens.tell);
    side.tokens.onShared(directory);
  } else {
    directory.tellTo({ share: () => undefined, forget: () => undefined, authRevision: (atLeast) => auth.noteAuthRevision(atLeast) });
  }
  const compaction = new CompactionCheck(isCompacted, () => side.followCompaction());
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
    writes: createWritePolicy({ mode: () => current.mode, liveness, mirror, ranges, metrics }),
    mode: () => current.mode,
    watchHub: { hub: watchHub, progressNotifyIntervalMs: config.watchProgressNotifyIntervalMs, bufferBytes: config.watchBufferBytes },
    mirrorReads: { store, mirror, ranges, liveness, barrier, compaction, directory, offlineLogins, auth, staleReads: config.staleReads, cache: responseCache, grayscale, metrics, log: mirrorLog },
  }, { instanceId });
  const grpc = createGrpcServer(core, log.child({ component: 'grpc' }));
  const gateway = createHttpGateway({
    scrape,
    grayscale: {
      report: () => grayscaleReport(grayscale, store),
      authEnabled: () => auth.isEnabled(),
      decide: (metadata, ranges) => directory.decide(metadata, ranges),
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
    readiness: () => readiness({ mirror, liveness, staleReads: config.staleReads, unmirrored: () => ranges.unmirrored }),
  });
  const http = gateway.server;
  const httpConnections = trackHttpConnections(http);
  const serverTls = config.serverTls === null ? null : watchServerContext(config.serverTls, log.child({ component: 'tls' }));
  const listenerTls =
    serverTls === null
      ? null
      : { options: () => serverTls.current(), requireClientCert: config.serverTls?.trustedCaFile != null, on: (event: 'changed', listener: () => void) => serverTls.on(event, listener) };
  const connections = grpcConnections(grpc, gateway.http2Request, () => metrics.grpcConnectionsMoved.inc());
  let listener: ProtocolListener;
  if (handedPort === undefined) listener = await listenForBoth(config.listenAddr, connections, http, log, listenerTls);
  else {
    const handed = serveHandedOver(handedPort.address, connections, http, log, listenerTls);
    handedPort.serve((socket) => handed.accept(socket));
    listener = handed;
  }
  advertiseClientUrl = advertisedUrlFor(config.advertiseClientUrl, listener.address, serverTls !== null);
  side.listening({ listen: listener.address, advertiseClientUrl });
  const metricsHttp = config.metricsAddr === null ? null : createMetricsServer(metrics, log, scrape);
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

  return {
    address: listener.address,
    metricsAddress: metricsServer?.address ?? null,
    reconfigure(next, setting) {
      RELOAD[setting]({ serverTls }, next, current);
      current = { ...current, [setting]: next[setting] };
    },
    async close() {
      log.info({ openStreams: streams.size }, 'shutting down');
      listener.stopAccepting();
      listener.destroyUndecided();
      streams.closeAll({ ...ETCD_ERRORS.shuttingDown, metadata: new Metadata() });
      await Promise.all([
        shutdownGrpc(grpc, config.shutdownGraceMs, log),
        closeHttp(http, httpConnections, config.shutdownGraceMs),
        metricsServer === null || metricsConnections === null ? Promise.resolve() : closeHttp(metricsServer.server, metricsConnections, config.shutdownGraceMs),
      ]);
      serverTls?.close();
    },
  };
}

async function listenHttp(server: HttpServer, address: HostPort): Promise<{ server: HttpServer; address: HostPort }> {
  return { server, address: { host: address.host, port: await listenOn(server, address) } };
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
