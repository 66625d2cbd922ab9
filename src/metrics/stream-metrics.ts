import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** Long-lived streams: downstream watches and what serves them, relayed and shared upstream streams, lease keep-alives. */
export interface StreamMetrics {
  /** Downstream watches open, by who serves them (`mirror`: the watch hub, `upstream`: relayed). */
  readonly watchers: Gauge<'source'>;
  /** Upstream watch streams: the mirror's own and those relaying watches the mirror cannot serve. */
  readonly upstreamWatchStreams: Gauge;
  /** Upstream watches relaying downstream watches the mirror cannot serve (identical ones share one). */
  readonly upstreamRelayedWatches: Gauge;
  readonly watchEventsSent: Counter;
  readonly watchEventsReplayed: Counter;
  readonly slowWatchersCancelled: Counter;
  /** LeaseKeepAlive streams open to the upstream: at most one, shared by every downstream keep-alive stream. */
  readonly leaseKeepAliveUpstreamStreams: Gauge;
  /** Downstream keep-alives answered by a renewal of the same lease already on its way upstream. */
  readonly leaseKeepAlivesCoalesced: Counter;
}

export function createStreamMetrics(registry: Registry): StreamMetrics {
  return {
    watchers: new Gauge({
      name: `${METRIC_PREFIX}watchers`,
      help: 'Downstream watches open, by source (mirror: served by the watch hub; upstream: relayed)',
      labelNames: ['source'],
      registers: [registry],
    }),
    upstreamWatchStreams: new Gauge({
      name: `${METRIC_PREFIX}upstream_watch_streams`,
      help: "Watch streams open to the upstream: the mirror's own and those relaying watches it cannot serve",
      registers: [registry],
    }),
    upstreamRelayedWatches: new Gauge({
      name: `${METRIC_PREFIX}upstream_relayed_watches`,
      help: 'Upstream watches relaying downstream watches the mirror cannot serve; identical downstream watches share one',
      registers: [registry],
    }),
    watchEventsSent: new Counter({
      name: `${METRIC_PREFIX}watch_events_sent_total`,
      help: 'Events sent to downstream watchers by the watch hub',
      registers: [registry],
    }),
    watchEventsReplayed: new Counter({
      name: `${METRIC_PREFIX}watch_events_replayed_total`,
      help: 'Events replayed to downstream watchers from the event log on disk',
      registers: [registry],
    }),
    slowWatchersCancelled: new Counter({
      name: `${METRIC_PREFIX}slow_watchers_cancelled_total`,
      help: 'Downstream watches cancelled because their client did not read fast enough',
      registers: [registry],
    }),
    leaseKeepAliveUpstreamStreams: new Gauge({
      name: `${METRIC_PREFIX}lease_keepalive_upstream_streams`,
      help: 'LeaseKeepAlive streams open to the upstream (one shared by every downstream keep-alive stream)',
      registers: [registry],
    }),
    leaseKeepAlivesCoalesced: new Counter({
      name: `${METRIC_PREFIX}lease_keepalives_coalesced_total`,
      help: 'Downstream lease keep-alives answered by a renewal of the same lease already in flight upstream',
      registers: [registry],
    }),
  };
}
