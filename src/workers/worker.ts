import { Socket } from 'node:net';
import { loadConfig } from '../config';
import type { ConfigChanges } from '../config-diff';
import { parseEndpoint } from '../etcd/endpoint';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { followStoredScope } from '../mirror/mirror-scope';
import { RELOAD, type ReloadParts } from '../reload-table';
import type { ProxyConfig } from '../settings/types';
import { openStore } from '../store/store';
import type { UpstreamPool } from '../upstream/pool';
import { TierStaleness } from '../upstream/tier-stale';
import type { MirrorStore } from '../store/store';
import { createInstanceId } from '../upstream/loop-guard';
import { createReconfigure } from '../wiring/reconfigure';
import { startServing } from '../wiring/serving';
import { buildSharedParts, type SharedParts } from '../wiring/shared-parts';
import type { MirrorSide, ProxyDeps } from '../wiring/sides';
import { createFollowerLiveness, type FollowerLiveness } from './follower-liveness';
import { startFollowerMirror, type FollowerMirror } from './follower-mirror';
import { followerStore } from './follower-store';
import { LoginBudgetClient } from './login-budget-client';
import { CLIENT_PORT_ENV, INSTANCE_ID_ENV, isToWorker, type ToPrimary, type ToWorker } from './messages';
import { MetricsRequests } from './metrics-request';
import { TokenInbox } from './token-inbox';

export interface RunningWorker {
  close(): Promise<void>;
}

/** How often the mirror's member is asked for a sign of life, as the primary's liveness works it out. */
function evidenceIntervalFor(upstreamTimeoutMs: number): number {
  return Math.max(50, Math.min(1_000, Math.floor(upstreamTimeoutMs / 3)));
}

/** What a worker follows of the primary, and what the primary's messages reach. */
interface FollowingParts extends SharedParts {
  readonly liveness: FollowerLiveness;
  readonly mirror: FollowerMirror;
  readonly tokens: TokenInbox;
  readonly loginBudget: LoginBudgetClient;
  readonly metricsRequests: MetricsRequests;
  /** Whether the upstream tier is stale: learned by any worker's calls, passed on by the primary. */
  readonly tier: TierStaleness;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly send: (message: ToPrimary) => void;
  /** Takes each connection the primary hands over, once the client port is served. */
  accept: ((socket: Socket) => void) | null;
  /** Applies a reloaded configuration, once the client port is served. */
  reconfigure: ((next: ProxyConfig) => ConfigChanges) | null;
}

/**
 * One serving process of `--workers N`: the client port (the primary
 * listens and hands each connection to one worker), answered from the mirror
 * the primary keeps. It opens the store read-only and follows each commit
 * the primary tells it of; it forwards its own calls to etcd through its own
 * connections; it probes nothing and lists nothing.
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
  const shared = buildSharedParts({
    config,
    store,
    log,
    metrics,
    instanceId,
    keepsMirror: false,
    upstreamLog: upstreamLog.child({}, { level: upstreamLog.levelVal > 50 ? upstreamLog.level : 'error' }),
    onAuthSignal: (signal) => send({ type: 'ecp:auth-signal', signal }),
  });
  const { scope } = shared;
  // The member gauges are the primary's: its probes decide health, and a sum over processes would count each member N+1 times.
  const parts: FollowingParts = {
    ...shared,
    liveness: createFollowerLiveness(evidenceIntervalFor(config.upstreamTimeoutMs)),
    mirror: startFollowerMirror(store, shared.auth, send),
    tokens: new TokenInbox(),
    loginBudget: new LoginBudgetClient(send),
    metricsRequests: new MetricsRequests(send),
    tier: new TierStaleness(),
    metrics,
    log,
    send,
    accept: null,
    reconfigure: null,
  };
  const followScope = (): void => followStoredScope(scope, () => store.meta().scope);
  followScope();
  for (const event of ['relisted', 'adopted', 'discarded'] as const) parts.mirror.on(event, followScope);
  parts.tier.onChange((staleSince) => send({ type: 'ecp:tier', staleSince }));

  const onMessage = (message: unknown, handle: unknown): void => {
    if (!isToWorker(message)) return;
    if (message.type !== 'ecp:connection') return onPrimaryMessage(parts, message, args);
    if (!(handle instanceof Socket)) return;
    send({ type: 'ecp:took', id: message.id });
    handle.once('close', () => send({ type: 'ecp:connection-closed' }));
    if (parts.accept === null) handle.destroy();
    else parts.accept(handle);
  };
  process.on('message', onMessage);
  // Everything that follows the primary is listening: it may send the state of things now.
  send({ type: 'ecp:hello' });

  const side = followingSide(parts, store, instanceId);
  const handedPort = { address: { host: config.listenAddr.host, port: Number(process.env[CLIENT_PORT_ENV] ?? config.listenAddr.port) }, serve: (serveConnection: (socket: Socket) => void) => (parts.accept = serveConnection) };
  const serving = await startServing({ config, log, metrics, scrape: parts.metricsRequests.scrape }, side, handedPort);
  // What this process has of the parts a reload reaches; the serving side applies the rest.
  const reloadParts: ReloadParts = { log, upstreamCredentials: shared.upstreamCredentials, grayscale: (settings) => shared.grayscale.configure(settings) };
  let applied = config;
  parts.reconfigure = createReconfigure(config, log, (next, setting) => {
    RELOAD[setting](reloadParts, next, applied);
    serving.reconfigure(next, setting);
    applied = { ...applied, [setting]: next[setting] };
  });

  return {
    async close() {
      await serving.close();
      process.off('message', onMessage);
      parts.liveness.close();
      shared.auth.close();
      await parts.mirror.close();
      await store.close();
      await shared.pool.close();
      shared.upstreamCredentials.close();
    },
  };
}

/** The mirror's side as a worker has it: the primary's mirror followed, what it learns told back. */
function followingSide(parts: FollowingParts, store: MirrorStore, instanceId: string): MirrorSide {
  const { send } = parts;
  return {
    store,
    pool: parts.pool,
    liveness: parts.liveness,
    mirror: parts.mirror,
    auth: parts.auth,
    identity: parts.identity,
    grayscale: parts.grayscale,
    scope: parts.scope,
    instanceId,
    tier: parts.tier,
    followCompaction: () => send({ type: 'ecp:compaction' }),
    listening: (self) => send({ type: 'ecp:listening', address: self.listen, advertiseClientUrl: self.advertiseClientUrl }),
    tokens: {
      tell: {
        share: (token) => send({ type: 'ecp:token', token }),
        forget: (token) => send({ type: 'ecp:token-forget', token }),
        authRevision: (atLeast) => send({ type: 'ecp:auth-revision', atLeast }),
      },
      onShared: (target) => parts.tokens.open(target),
      loginBudget: parts.loginBudget,
    },
  };
}

/** One message of the primary's (a connection, with its handle, is taken before this). */
function onPrimaryMessage(parts: FollowingParts, message: ToWorker, args: readonly string[]): void {
  switch (message.type) {
    case 'ecp:mirror':
      return parts.mirror.follow(message.notice);
    case 'ecp:liveness':
      return parts.liveness.follow(message.lost, message.silent, message.answered);
    case 'ecp:auth':
      return parts.auth.follow(message.state);
    case 'ecp:scope':
      parts.scope.set(parts.scope.current, message.unmirrored);
      return;
    case 'ecp:members':
      return followMembers(parts.pool, message.members);
    case 'ecp:tier':
      return parts.tier.adopt(message.staleSince);
    case 'ecp:reload':
      try {
        parts.reconfigure?.(loadConfig({ argv: args, env: process.env }));
      } catch (error) {
        parts.log.error({ err: error instanceof Error ? error.message : String(error) }, 'reloaded configuration refused; the running one stays');
      }
      return;
    case 'ecp:metrics-collect':
      void parts.metrics.registry.getMetricsAsJSON().then((json) => parts.send({ type: 'ecp:metrics-json', id: message.id, metrics: json }));
      return;
    case 'ecp:metrics':
      return parts.metricsRequests.answered(message.id, message.text);
    case 'ecp:connection':
      return; // taken with its handle
    case 'ecp:token':
      return parts.tokens.deliver((target) => target.adopt(message.token));
    case 'ecp:token-forget':
      return parts.tokens.deliver((target) => target.adoptForget(message.token));
    case 'ecp:auth-revision':
      return parts.tokens.deliver((target) => target.adoptAuthRevision(message.atLeast));
    case 'ecp:login-reserved':
      return parts.loginBudget.answer(message.id, message.at);
  }
}

/** The members and their health as the primary's probes found them. */
function followMembers(pool: UpstreamPool, members: Extract<ToWorker, { type: 'ecp:members' }>['members']): void {
  pool.replace(members.map((member) => parseEndpoint(member.url)));
  for (const member of pool.members()) {
    const known = members.find((m) => m.url === member.endpoint.url);
    if (known?.healthy === true) pool.report(member, 'healthy');
    else if (known?.healthy === false) pool.report(member, 'unhealthy');
    if (known !== undefined) pool.learnKind(member, known.kind);
  }
}
