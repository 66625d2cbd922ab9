import type { Worker } from 'node:cluster';
import { createServer } from 'node:net';
import type { ProxyConfig } from '../settings/types';
import type { ConfigChanges } from '../config-diff';
import { createInstanceId } from '../upstream/loop-guard';
import { startMirrorKeeper } from '../wiring/mirror-keeper';
import { createReconfigure } from '../wiring/reconfigure';
import type { MirrorKeeper, ProxyDeps } from '../wiring/sides';
import type { Logger } from '../log';
import { listenOn } from '../listener/listen';
import { LoginLimiter } from '../auth/login-limits';
import { ConnectionHandover } from './connection-handover';
import type { ToPrimary } from './messages';
import { MetricsCollector } from './metrics-collect';
import { ServingProcesses } from './serving-processes';
import { SharedTokens } from './shared-tokens';
import { stateNow, tellWorkersOfChanges } from './worker-state';

export interface RunningPrimary {
  reconfigure(next: ProxyConfig): ConfigChanges;
  close(): Promise<void>;
}

/**
 * `--workers N`: this process keeps the mirror (the one upstream watch, the
 * list, the checks, the member refresh, liveness, snapshots) and serves no
 * client; N worker processes serve the client port this process listens on
 * (each connection handed to one), from the same LMDB environment, told of
 * every commit over the cluster channel. A worker that exits is started
 * again; SIGTERM stops the workers first (each drains as a single process
 * does), then the mirror.
 */
export async function startPrimary({ config, log, metrics }: ProxyDeps, workerCount: number): Promise<RunningPrimary> {
  const instanceId = createInstanceId();
  // The port first: a proxy that cannot bind it stops before anything else starts.
  const clientPort = createServer({ pauseOnConnect: true, noDelay: true });
  const boundPort = await listenOn(clientPort, config.listenAddr);
  // Taken from the moment the port listens: a connection accepted while the mirror's side starts waits for the
  // first worker. Without a listener yet it was accepted and then neither served nor closed, and a gRPC client
  // waited out its connect timeout (20 s) with every channel that shared the connection attempt.
  const handover = new ConnectionHandover((count) => metrics.workersServing.set(count));
  clientPort.on('connection', (socket) => handover.handOver(socket));
  const keeper = await startMirrorKeeper({ config, log, metrics }, instanceId).catch((error: unknown) => {
    clientPort.close();
    handover.close();
    throw error;
  });
  let grayscalePrefixes = config.grayscale.prefixes;
  const parts: PrimaryParts = { keeper, handover, collector: new MetricsCollector(metrics), sharedTokens: new SharedTokens(), loginLimiter: new LoginLimiter(), log, discoveryStarted: false, tierStaleSince: null };
  keeper.side.liveness.on('back', () => parts.sharedTokens.upstreamBack());
  const workers = new ServingProcesses({
    count: workerCount,
    instanceId,
    clientPort: boundPort,
    shutdownGraceMs: config.shutdownGraceMs,
    onMessage: (worker, message) => onWorkerMessage(parts, workers, worker, message),
    onExit: (worker) => handover.forget(worker),
    metrics,
    log,
  });
  tellWorkersOfChanges(keeper, (message) => workers.broadcast(message), () => grayscalePrefixes);
  clientPort.on('error', (error) => log.error({ err: error }, 'listener error'));
  log.info({ workers: workerCount, pid: process.pid }, 'mirror kept here; serving processes started');

  const reconfigureKeeper = createReconfigure(config, log, (next, setting) => {
    keeper.reconfigure(next, setting);
    if (setting === 'grayscale') grayscalePrefixes = next.grayscale.prefixes;
  });
  return {
    reconfigure(next) {
      const changes = reconfigureKeeper(next);
      // Each worker reads flags, environment and file itself, as this process just did.
      workers.broadcast({ type: 'ecp:reload' });
      return changes;
    },
    async close() {
      await keeper.leaveTier();
      clientPort.close();
      handover.close();
      await workers.close();
      await keeper.close();
      log.info('stopped');
    },
  };
}

/** What the primary keeps for its workers, beside the mirror. */
interface PrimaryParts {
  readonly keeper: MirrorKeeper;
  readonly handover: ConnectionHandover;
  readonly collector: MetricsCollector;
  /** Tokens learned by any worker, for every other one and for workers started later. */
  readonly sharedTokens: SharedTokens;
  /** The offline login budgets of every worker together (attempts are reserved here before a worker hashes). */
  readonly loginLimiter: LoginLimiter;
  readonly log: Logger;
  /** Member discovery starts once, when the first worker listens (the address is the same for every worker). */
  discoveryStarted: boolean;
  /** Whether the upstream tier is stale, as a worker's calls last found (since when, epoch ms): the state a new worker is told. */
  tierStaleSince: number | null;
}

function onWorkerMessage(parts: PrimaryParts, workers: ServingProcesses, worker: Worker, message: ToPrimary): void {
  const { keeper: { side }, handover, sharedTokens } = parts;
  switch (message.type) {
    case 'ecp:token':
      if (sharedTokens.told(message.token, side.liveness.isLost())) workers.broadcast(message, worker);
      return;
    case 'ecp:token-forget':
      sharedTokens.forget(message.token);
      return workers.broadcast(message, worker);
    case 'ecp:auth-revision':
      side.auth.noteAuthRevision(message.atLeast);
      if (sharedTokens.authRevision(message.atLeast)) workers.broadcast(message, worker);
      return;
    case 'ecp:login-reserve':
      return workers.send(worker, { type: 'ecp:login-reserved', id: message.id, at: parts.loginLimiter.reserveNow(message.attempt)?.at ?? null });
    case 'ecp:login-give-back':
      return parts.loginLimiter.giveBack(message.attempt, { at: message.at });
    case 'ecp:took':
      return handover.took(message.id);
    case 'ecp:connection-closed':
      return handover.closed(worker);
    case 'ecp:hello':
      for (const state of stateNow(parts.keeper, sharedTokens)) workers.send(worker, state);
      workers.send(worker, { type: 'ecp:tier', staleSince: parts.tierStaleSince });
      return;
    case 'ecp:tier':
      // The worker whose calls learned it holds it already; the others (and workers started later) follow.
      parts.tierStaleSince = message.staleSince;
      workers.broadcast({ type: 'ecp:tier', staleSince: message.staleSince });
      return;
    case 'ecp:hurry':
      return side.mirror.hurry();
    case 'ecp:relist':
      return side.mirror.requestRelist(message.reason);
    case 'ecp:compaction':
      return side.followCompaction();
    case 'ecp:compacted':
      if (message.revision > side.store.meta().compactRevision) side.store.updateMeta({ compactRevision: message.revision });
      return;
    case 'ecp:auth-signal':
      if (message.signal === 'refused') side.auth.refused();
      else if (message.signal === 'loginSeen') side.auth.loginSeen();
      else side.auth.noteServed();
      return;
    case 'ecp:listening':
      handover.serves(worker);
      if (!parts.discoveryStarted) {
        parts.discoveryStarted = true;
        side.listening({ listen: message.address, advertiseClientUrl: message.advertiseClientUrl });
      }
      return;
    case 'ecp:metrics-request':
      parts.collector.collect(workers.all.filter((target) => target.isConnected()).map((target) => (id: number) => workers.send(target, { type: 'ecp:metrics-collect', id }))).then(
        (text) => workers.send(worker, { type: 'ecp:metrics', id: message.id, text }),
        (error: unknown) => parts.log.error({ err: error }, 'metrics of the workers could not be summed'),
      );
      return;
    case 'ecp:metrics-json':
      return parts.collector.received(message.id, workers.labelOf(worker), message.metrics);
  }
}
