import type { AuthGate } from '../auth/auth-gate';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { GrayscaleView } from '../grayscale/view';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { startMirror, type Mirror } from '../mirror/mirror';
import type { MirrorScope } from '../mirror/mirror-scope';
import { shownDefault } from '../settings/table';
import type { ProxyConfig } from '../settings/types';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamPool } from '../upstream/pool';

export interface KeptMirrorParts {
  readonly config: ProxyConfig;
  readonly store: MirrorStore;
  readonly pool: UpstreamPool;
  readonly liveness: Liveness;
  readonly scope: MirrorScope;
  readonly auth: AuthGate;
  readonly identity: UpstreamLogin;
  readonly grayscale: GrayscaleView;
  readonly metrics: Metrics;
  readonly log: Logger;
}

export interface KeptMirror {
  readonly mirror: Mirror;
  /** Called with M after every commit that moved it. */
  onRevision(listener: (revision: number) => void): void;
}

/** The mirror (list + watch into the store), its metrics, and what it says at start. */
export function startKeptMirror(parts: KeptMirrorParts): KeptMirror {
  const { config, store, pool, liveness, scope, auth, identity, grayscale, metrics, log } = parts;
  const countWithheld = (): void => metrics.grayscaleWithheldKeys.set(store.withheldCount());
  countWithheld();
  const revisionListeners = new Set<(revision: number) => void>();
  const mirror = startMirror({
    store,
    pool,
    liveness,
    log,
    scope,
    scopeRefreshMs: config.authRefreshIntervalMs,
    auth,
    identity,
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
  if (store.meta().revision > 0) log.info({ revision: store.meta().revision }, 'mirror opened: serving from disk');
  liveness.once('lost', () => {
    if (!mirror.hasData()) log.warn({ endpoints: config.endpoints.map((endpoint) => endpoint.url), hint: nothingToServeHint(config, auth) }, 'nothing to serve yet: no etcd member has answered and the mirror holds no copy');
  });
  mirror.on('relisted', () => metrics.mirrorRelists.inc());
  for (const event of ['adopted', 'discarded', 'rederived'] as const) mirror.on(event, countWithheld);
  return { mirror, onRevision: (listener) => revisionListeners.add(listener) };
}

/** The default --endpoints, named where the proxy explains that nothing answers there. */
const DEFAULT_ENDPOINTS = shownDefault('endpoints') ?? '';

/** A first start with nowhere to copy from serves nothing at all: said once, with what to change. */
function nothingToServeHint(config: ProxyConfig, auth: AuthGate): string {
  if (auth.isRequired()) {
    return config.upstreamUser === null
      ? 'etcd has auth on and the mirror has no user of its own: give --user (a user that may read the mirrored keys) to mirror what it may read'
      : "etcd has auth on and the mirror's user (--user) may read none of the mirrored keys: grant it read permission on them (see notMirrored in /readyz)";
  }
  const urls = config.endpoints.map((endpoint) => endpoint.url);
  const defaulted = config.discovery.kind === 'endpoints' && urls.length === 1 && urls[0] === DEFAULT_ENDPOINTS;
  return defaulted
    ? `--endpoints is its default (${DEFAULT_ENDPOINTS}), where no etcd answers: set --endpoints (or ETCD_CACHE_PROXY_ENDPOINTS) to your cluster's client URLs; 'npm run demo' shows the proxy at work with a throwaway etcd`
    : 'check that these endpoints are etcd client URLs this machine can reach';
}
