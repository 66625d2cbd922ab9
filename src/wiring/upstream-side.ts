import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { ProxyConfig } from '../settings/types';
import type { MirrorStore } from '../store/store';
import { createLiveness, type Liveness } from '../upstream/liveness';
import { createMembership, type Membership } from '../upstream/membership';
import { observePool } from '../upstream/pool-metrics';
import type { UpstreamPool } from '../upstream/pool';

export interface UpstreamSide {
  readonly membership: Membership;
  readonly liveness: Liveness;
}

/**
 * The members as the process that keeps the mirror follows them: discovery
 * and the 30 s refresh (the list kept in the store for a restart during an
 * outage), liveness (lost/back), and their metrics.
 */
export function startUpstreamSide(config: ProxyConfig, pool: UpstreamPool, store: MirrorStore, metrics: Metrics, log: Logger): UpstreamSide {
  observePool(pool, metrics);
  const membership = createMembership({
    source: config.discovery,
    endpoints: config.endpoints,
    syncIntervalMs: config.syncIntervalMs,
    tls: config.upstreamTls,
    pool,
    store,
    log,
    metrics: {
      refreshed: (result) => metrics.memberListRefreshes.inc({ result }),
      selfDropped: () => metrics.loopEndpointsDropped.inc(),
    },
  });
  const liveness = createLiveness(pool, config.upstreamTimeoutMs, log, { selfDetected: (member, proxiesInLoop) => membership.dropSelf(member, proxiesInLoop) });
  metrics.upstreamUp.set(1);
  liveness.on('lost', () => metrics.upstreamUp.set(0));
  liveness.on('back', () => metrics.upstreamUp.set(1));
  return { membership, liveness };
}
