import { buildSharedParts } from '../wiring/shared-parts';
import { followStoredScope } from '../mirror/mirror-scope';
import { Socket } from 'node:net';
import type { AuthDirectory } from '../auth/directory';
import type { ConfigChanges } from '../config-diff';
import { loadConfig, type ProxyConfig } from '../config';
import { parseEndpoint } from '../etcd/endpoint';
import { RELOAD, type ReloadParts } from '../reload-table';
import { createReconfigure, startServing, type ProxyDeps } from '../proxy';
import { openStore } from '../store/store';
import { createInstanceId } from '../upstream/loop-guard';
import { createFollowerLiveness } from './follower-liveness';
import { startFollowerMirror } from './follower-mirror';
import { followerStore } from './follower-store';
import { LoginBudgetClient } from './login-budget-client';
import { CLIENT_PORT_ENV, INSTANCE_ID_ENV, isToWorker, type ToPrimary, type ToWorker } from './messages';

export interface RunningWorker {
  close(): Promise<void>;
}

/** How often the mirror's member is asked for a sign of life, as the primary's liveness works it out. */
function evidenceIntervalFor(upstreamTimeoutMs: number): number {
  return Math.max(50, Math.min(1_000, Math.floor(upstreamTimeoutMs / 3)));
}

/**
 * One serving process of `--workers N`: the client port (shared with the
 * other workers through Node's cluster), answered from the mirror the
 * primary process keeps. It opens the store read-only and follows each
 * commit the primary tells it of; it forwards its own calls to etcd through
 * its own connections; it probes nothing and lists nothing.
 */
export async function startWorker({ config, log, metrics }: ProxyDeps, args: readonly string[]): Promise<RunningWorker> {
  const send = (message: ToPrimary): void => {
    if (process.connected) process.send?.(message);
  };
  const store = followerStore(openStore(config.dataDir, { readOnly: true, log: log.child({ component: 'store' }) }), send);
  const upstreamLog = log.child({ component: 'upstream' });
  const instanceId = process.env[INSTANCE_ID_ENV] ?? createInstanceId();
  // Members and their health are the primary's to tell (and log, once per change); a worker logs only what goes wrong.
  // Its gate follows the primary's; what clients' calls teach it goes to the primary, which tells everyone.
  const { upstreamCredentials, pool, auth, identity, grayscale, scope } = buildSharedParts({
    config,
    store,
    log,
    metrics,
    instanceId,
    keepsMirror: false,
    upstreamLog: upstreamLog.child({}, { level: upstreamLog.levelVal > 50 ? upstreamLog.level : 'error' }),
    onAuthSignal: (signal) => send({ type: 'ecp:auth-signal', signal }),
  });
  // The member gauges are the primary's: its probes decide health, and a sum over processes would count each member N+1 times.
  const liveness = createFollowerLiveness(evidenceIntervalFor(config.upstreamTimeoutMs));
  const mirror = startFollowerMirror(store, auth, send);
  const followScope = (): void => followStoredScope(scope, () => store.meta().scope);
  followScope();
  for (const event of ['relisted', 'adopted', 'discarded'] as const) mirror.on(event, followScope);

  // Metrics the primary collects for the sum, and the sums it sends back, by request.
  let nextScrape = 0;
  const scrapes = new Map<number, (text: string) => void>();
  const scrape = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const id = (nextScrape += 1);
      const timer = setTimeout(() => {
        scrapes.delete(id);
        reject(new Error('the primary process did not answer with the metrics'));
      }, 5_000);
      scrapes.set(id, (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      send({ type: 'ecp:metrics-request', id });
    });

  let reconfigure: ((next: ProxyConfig) => ConfigChanges) | null = null;
  let accept: ((socket: Socket) => void) | null = null;
  type Adopting = Pick<AuthDirectory, 'adopt' | 'adoptForget' | 'adoptAuthRevision'>;
  let directory: Adopting | null = null;
  // What the primary tells of tokens before this worker's directory exists (right after hello) waits for it, in order.
  const early: ((target: Adopting) => void)[] = [];
  const toDirectory = (apply: (target: Adopting) => void): void => {
    if (directory === null) early.push(apply);
    else apply(directory);
  };
  const loginBudget = new LoginBudgetClient(send);
  const onMessage = (message: unknown, handle: unknown): void => {
    if (!isToWorker(message)) return;
    if (message.type === 'ecp:connection') {
      if (handle instanceof Socket) takeConnection(message.id, handle);
      return;
    }
    handleMessage(message);
  };
  const takeConnection = (id: number, socket: Socket): void => {
    send({ type: 'ecp:took', id });
    socket.once('close', () => send({ type: 'ecp:connection-closed' }));
    if (accept === null) socket.destroy();
    else accept(socket);
  };
  const handleMessage = (message: ToWorker): void => {
    switch (message.type) {
      case 'ecp:mirror':
        mirror.follow(message.notice);
        break;
      case 'ecp:liveness':
        liveness.follow(message.lost, message.silent, message.answered);
        break;
      case 'ecp:auth':
        auth.follow(message.state);
        break;
      case 'ecp:scope':
        scope.set(scope.current, message.unmirrored);
        break;
      case 'ecp:members': {
        const endpoints = message.members.map((member) => parseEndpoint(member.url));
        pool.replace(endpoints);
        for (const member of pool.members()) {
          const known = message.members.find((m) => m.url === member.endpoint.url);
          if (known?.healthy === true) pool.report(member, 'healthy');
          else if (known?.healthy === false) pool.report(member, 'unhealthy');
        }
        break;
      }
      case 'ecp:reload':
        try {
          reconfigure?.(loadConfig({ argv: args, env: process.env }));
        } catch (error) {
          log.error({ err: error instanceof Error ? error.message : String(error) }, 'reloaded configuration refused; the running one stays');
        }
        break;
      case 'ecp:metrics-collect':
        void metrics.registry.getMetricsAsJSON().then((json) => send({ type: 'ecp:metrics-json', id: message.id, metrics: json }));
        break;
      case 'ecp:metrics':
        scrapes.get(message.id)?.(message.text);
        scrapes.delete(message.id);
        break;
      case 'ecp:connection':
        break; // taken with its handle in onMessage
      case 'ecp:token':
        toDirectory((target) => target.adopt(message.token));
        break;
      case 'ecp:token-forget':
        toDirectory((target) => target.adoptForget(message.token));
        break;
      case 'ecp:auth-revision':
        toDirectory((target) => target.adoptAuthRevision(message.atLeast));
        break;
      case 'ecp:login-reserved':
        loginBudget.answer(message.id, message.at);
        break;
    }
  };
  process.on('message', onMessage);
  // Everything that follows the primary is listening: it may send the state of things now.
  send({ type: 'ecp:hello' });

  const serving = await startServing(
    { config, log, metrics, scrape },
    {
      store,
      pool,
      liveness,
      mirror,
      auth,
      identity,
      grayscale,
      scope,
      instanceId,
      followCompaction: () => send({ type: 'ecp:compaction' }),
      listening: (self) => send({ type: 'ecp:listening', address: self.listen, advertiseClientUrl: self.advertiseClientUrl }),
      tokens: {
        tell: {
          share: (token) => send({ type: 'ecp:token', token }),
          forget: (token) => send({ type: 'ecp:token-forget', token }),
          authRevision: (atLeast) => send({ type: 'ecp:auth-revision', atLeast }),
        },
        onShared: (target) => {
          directory = target;
          for (const apply of early.splice(0)) apply(target);
        },
        loginBudget,
      },
    },
    // The primary listens and hands each connection to the worker with the fewest (Node's cluster would
    // lose a connection handed to a worker at the moment it died: its client would wait for nothing).
    { address: { host: config.listenAddr.host, port: Number(process.env[CLIENT_PORT_ENV] ?? config.listenAddr.port) }, serve: (serveConnection) => (accept = serveConnection) },
  );
  // What this process has of the parts a reload reaches; the serving side applies the rest.
  const reloadParts: ReloadParts = { log, upstreamCredentials, grayscale: (settings) => grayscale.configure(settings) };
  let applied = config;
  reconfigure = createReconfigure(config, log, (next, setting) => {
    RELOAD[setting](reloadParts, next, applied);
    serving.reconfigure(next, setting);
    applied = { ...applied, [setting]: next[setting] };
  });

  return {
    async close() {
      await serving.close();
      process.off('message', onMessage);
      liveness.close();
      auth.close();
      await mirror.close();
      await store.close();
      await pool.close();
      upstreamCredentials.close();
    },
  };
}
