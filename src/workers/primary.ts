import cluster, { type Worker } from 'node:cluster';
import { createServer, type Socket } from 'node:net';
import type { ProxyConfig } from '../config';
import type { ConfigChanges } from '../config-diff';
import { createInstanceId } from '../upstream/loop-guard';
import { createReconfigure, startMirrorKeeper, type ProxyDeps } from '../proxy';
import { sumMetrics, type ProcessMetrics } from './metrics-sum';
import { CLIENT_PORT_ENV, INSTANCE_ID_ENV, isToPrimary, type MirrorNotice, type ToPrimary, type ToWorker } from './messages';
import { listenOn } from '../listener/listen';
import { LoginLimiter } from '../auth/login-limits';
import { SharedTokens } from './shared-tokens';

/** A worker that dies within this long of its start is restarted after a pause, not at once (a crash loop). */
const CRASH_LOOP_MS = 5_000;
const RESTART_PAUSE_MS = 1_000;
/** How long a scrape waits for the workers' metrics. */
const COLLECT_TIMEOUT_MS = 2_000;
/** Connections accepted while no worker serves (all restarting) wait for one, up to this many. */
const MAX_WAITING_CONNECTIONS = 1_024;

export interface RunningPrimary {
  reconfigure(next: ProxyConfig): ConfigChanges;
  close(): Promise<void>;
}

/**
 * `--workers N`: this process keeps the mirror (the one upstream watch, the
 * list, the checks, the member refresh, liveness, snapshots) and serves no
 * client; N worker processes share the client port (Node's cluster) and
 * serve it from the same LMDB environment, told of every commit over the
 * cluster channel. A worker that exits is started again; SIGTERM stops the
 * workers first (each drains as a single process does), then the mirror.
 */
export async function startPrimary({ config, log, metrics }: ProxyDeps, workerCount: number): Promise<RunningPrimary> {
  const instanceId = createInstanceId();
  // The port first: a proxy that cannot bind it stops before anything else starts.
  const clientPort = createServer({ pauseOnConnect: true, noDelay: true });
  const boundPort = await listenOn(clientPort, config.listenAddr);
  const keeper = await startMirrorKeeper({ config, log, metrics }, instanceId).catch((error: unknown) => {
    clientPort.close();
    throw error;
  });
  const { side } = keeper;
  let stopping = false;
  let grayscalePrefixes = config.grayscale.prefixes;
  const workers = new Set<Worker>();
  /** Each worker's place, 1..N: a restarted one takes the place of the one that exited (its metrics' `worker` label). */
  const slots = new Map<Worker, number>();
  const serving = new Set<Worker>();
  const countServing = (): void => metrics.workersServing.set(serving.size);
  let discoveryStarted = false;
  const send = (worker: Worker, message: ToWorker): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const broadcast = (message: ToWorker): void => {
    for (const worker of workers) send(worker, message);
  };

  const livenessState = (): ToWorker => ({ type: 'ecp:liveness', lost: side.liveness.isLost(), silent: side.liveness.isSilent(), answered: side.liveness.hasAnswered() });
  const membersState = (): ToWorker => ({
    type: 'ecp:members',
    members: side.pool.members().map((member) => {
      const health = side.pool.health(member);
      return { url: member.endpoint.url, healthy: health === 'healthy' ? true : health === 'unhealthy' ? false : null };
    }),
  });
  const notice = (mirrorNotice: MirrorNotice): void => broadcast({ type: 'ecp:mirror', notice: mirrorNotice });

  keeper.onRevision((revision) => notice({ kind: 'revision', revision }));
  side.mirror.on('relisted', (revision, previous) => notice({ kind: 'relisted', revision, previous }));
  side.mirror.on('adopted', (revision, previous) => notice({ kind: 'adopted', revision, previous }));
  side.mirror.on('discarded', (previous) => notice({ kind: 'discarded', previous }));
  side.mirror.on('rederived', (revision) => notice({ kind: 'rederived', revision, prefixes: [...grayscalePrefixes, ...side.grayscale.settings.prefixes] }));
  for (const event of ['lost', 'back', 'silent', 'answered'] as const) side.liveness.on(event, () => broadcast(livenessState()));
  side.auth.onStateChange((state) => broadcast({ type: 'ecp:auth', state }));
  side.scope.onUnmirrored((unmirrored) => broadcast({ type: 'ecp:scope', unmirrored }));
  for (const event of ['changed', 'healthy', 'unhealthy'] as const) side.pool.on(event, () => broadcast(membersState()));

  // A scrape sums every process's registry: this one's (the mirror's metrics) and each worker's.
  let nextCollect = 0;
  const collecting = new Map<number, { readonly parts: ProcessMetrics[]; readonly expected: number; readonly done: () => void }>();
  const scrapeAll = async (): Promise<string> => {
    const id = (nextCollect += 1);
    const parts: ProcessMetrics[] = [{ process: 'mirror', metrics: await metrics.registry.getMetricsAsJSON() }];
    const targets = [...workers].filter((worker) => worker.isConnected());
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, COLLECT_TIMEOUT_MS);
      collecting.set(id, {
        parts,
        expected: targets.length + 1,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      for (const worker of targets) send(worker, { type: 'ecp:metrics-collect', id });
      if (targets.length === 0) resolve();
    });
    collecting.delete(id);
    return sumMetrics(parts);
  };

  // Each accepted connection goes to the serving worker with the fewest open, and is closed here once
  // that worker says it holds it; if the worker dies first, it is closed and its client connects again.
  const openConnections = new Map<Worker, number>();
  const handingOver = new Map<number, { readonly socket: Socket; readonly worker: Worker }>();
  const waiting: Socket[] = [];
  let nextConnection = 0;
  let turn = 0;
  /** The worker with the fewest connections open; among equals, each in turn (short-lived connections spread too). */
  const leastBusy = (): Worker | undefined => {
    const candidates = [...serving];
    turn += 1;
    let best: Worker | undefined;
    for (let i = 0; i < candidates.length; i += 1) {
      const worker = candidates[(turn + i) % candidates.length];
      if (worker !== undefined && (best === undefined || (openConnections.get(worker) ?? 0) < (openConnections.get(best) ?? 0))) best = worker;
    }
    return best;
  };
  const handOver = (socket: Socket): void => {
    const worker = leastBusy();
    if (worker === undefined) {
      if (waiting.length >= MAX_WAITING_CONNECTIONS) socket.destroy();
      else waiting.push(socket);
      return;
    }
    const id = (nextConnection += 1);
    handingOver.set(id, { socket, worker });
    openConnections.set(worker, (openConnections.get(worker) ?? 0) + 1);
    worker.send({ type: 'ecp:connection', id } satisfies ToWorker, socket, { keepOpen: true }, (error) => {
      if (error === null || !handingOver.has(id)) return;
      handingOver.delete(id);
      socket.destroy();
    });
  };
  clientPort.on('connection', handOver);
  clientPort.on('error', (error) => log.error({ err: error }, 'listener error'));
  const forgetConnectionsOf = (worker: Worker): void => {
    for (const [id, pending] of handingOver) {
      if (pending.worker !== worker) continue;
      handingOver.delete(id);
      pending.socket.destroy();
    }
    openConnections.delete(worker);
  };

  // Tokens learned by any worker, for every other one and for workers started later.
  const sharedTokens = new SharedTokens();
  // The offline login budgets of every worker together (attempts are reserved here before a worker hashes).
  const loginLimiter = new LoginLimiter();
  side.liveness.on('back', () => sharedTokens.upstreamBack());

  const onMessage = (worker: Worker, message: ToPrimary): void => {
    switch (message.type) {
      case 'ecp:token':
        if (sharedTokens.told(message.token, side.liveness.isLost())) for (const other of workers) if (other !== worker) send(other, message);
        break;
      case 'ecp:token-forget':
        sharedTokens.forget(message.token);
        for (const other of workers) if (other !== worker) send(other, message);
        break;
      case 'ecp:auth-revision':
        side.auth.noteAuthRevision(message.atLeast);
        if (sharedTokens.authRevision(message.atLeast)) for (const other of workers) if (other !== worker) send(other, message);
        break;
      case 'ecp:login-reserve':
        send(worker, { type: 'ecp:login-reserved', id: message.id, at: loginLimiter.reserveNow(message.attempt)?.at ?? null });
        break;
      case 'ecp:login-give-back':
        loginLimiter.giveBack(message.attempt, { at: message.at });
        break;
      case 'ecp:took': {
        const pending = handingOver.get(message.id);
        handingOver.delete(message.id);
        pending?.socket.destroy(); // this process's copy: the worker's stays open
        break;
      }
      case 'ecp:connection-closed':
        openConnections.set(worker, Math.max(0, (openConnections.get(worker) ?? 0) - 1));
        break;
      case 'ecp:hello': {
        // Whatever it missed before it listened: the state of things now, and the mirror's revision.
        send(worker, livenessState());
        send(worker, { type: 'ecp:auth', state: side.auth.state() });
        send(worker, { type: 'ecp:scope', unmirrored: side.scope.unmirrored });
        send(worker, membersState());
        send(worker, { type: 'ecp:mirror', notice: { kind: 'revision', revision: side.mirror.revision() } });
        // Then the tokens (what etcd no longer takes is not among them), after the liveness they depend on.
        const replay = sharedTokens.replay();
        if (replay.authRevisionAtLeast > 0) send(worker, { type: 'ecp:auth-revision', atLeast: replay.authRevisionAtLeast });
        for (const token of replay.tokens) send(worker, { type: 'ecp:token', token });
        break;
      }
      case 'ecp:hurry':
        side.mirror.hurry();
        break;
      case 'ecp:relist':
        side.mirror.requestRelist(message.reason);
        break;
      case 'ecp:compaction':
        side.followCompaction();
        break;
      case 'ecp:compacted':
        if (message.revision > side.store.meta().compactRevision) side.store.updateMeta({ compactRevision: message.revision });
        break;
      case 'ecp:auth-signal':
        if (message.signal === 'refused') side.auth.refused();
        else if (message.signal === 'loginSeen') side.auth.loginSeen();
        else side.auth.noteServed();
        break;
      case 'ecp:listening':
        serving.add(worker);
        countServing();
        for (const socket of waiting.splice(0)) handOver(socket);
        // Member discovery starts once; the address is the same for every worker.
        if (!discoveryStarted) {
          discoveryStarted = true;
          side.listening({ listen: message.address, advertiseClientUrl: message.advertiseClientUrl });
        }
        break;
      case 'ecp:metrics-request':
        scrapeAll().then(
          (text) => send(worker, { type: 'ecp:metrics', id: message.id, text }),
          (error: unknown) => log.error({ err: error }, 'metrics of the workers could not be summed'),
        );
        break;
      case 'ecp:metrics-json': {
        const collect = collecting.get(message.id);
        if (collect === undefined) break;
        collect.parts.push({ process: String(slots.get(worker) ?? worker.id), metrics: message.metrics });
        if (collect.parts.length >= collect.expected) collect.done();
        break;
      }
    }
  };

  const fork = (slot: number): void => {
    const worker = cluster.fork({ [INSTANCE_ID_ENV]: instanceId, [CLIENT_PORT_ENV]: String(boundPort) });
    const startedAt = Date.now();
    workers.add(worker);
    slots.set(worker, slot);
    worker.on('message', (message: unknown) => {
      if (isToPrimary(message)) onMessage(worker, message);
    });
    // A message sent as the worker dies fails (EPIPE); its exit follows and is handled there.
    worker.on('error', (error) => log.debug({ worker: worker.process.pid, err: error.message }, 'a message to a serving process was not delivered'));
    worker.on('exit', (code, signal) => {
      workers.delete(worker);
      slots.delete(worker);
      serving.delete(worker);
      countServing();
      forgetConnectionsOf(worker);
      if (stopping) {
        if (code !== 0) log.warn({ worker: worker.process.pid, code, signal }, 'a serving process did not stop cleanly');
        return;
      }
      const quick = Date.now() - startedAt < CRASH_LOOP_MS;
      log.error({ worker: worker.process.pid, code, signal, restartInMs: quick ? RESTART_PAUSE_MS : 0 }, 'a serving process exited: starting another');
      metrics.workerRestarts.inc();
      if (quick) setTimeout(() => {
          if (!stopping) fork(slot);
        }, RESTART_PAUSE_MS).unref();
      else fork(slot);
    });
  };
  for (let slot = 1; slot <= workerCount; slot += 1) fork(slot);
  log.info({ workers: workerCount, pid: process.pid }, 'mirror kept here; serving processes started');

  const reconfigureKeeper = createReconfigure(config, log, (next, setting) => {
    keeper.reconfigure(next, setting);
    if (setting === 'grayscale') grayscalePrefixes = next.grayscale.prefixes;
  });
  return {
    reconfigure(next) {
      const changes = reconfigureKeeper(next);
      // Each worker reads flags, environment and file itself, as this process just did.
      broadcast({ type: 'ecp:reload' });
      return changes;
    },
    async close() {
      stopping = true;
      clientPort.close();
      for (const socket of waiting.splice(0)) socket.destroy();
      const exits = [...workers].map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))));
      for (const worker of workers) worker.process.kill('SIGTERM');
      // Each drains within its grace period; one that hangs past it is cut.
      const cut = setTimeout(() => {
        for (const worker of workers) worker.process.kill('SIGKILL');
      }, config.shutdownGraceMs + 5_000);
      await Promise.all(exits);
      clearTimeout(cut);
      await keeper.close();
      log.info('stopped');
    },
  };
}
