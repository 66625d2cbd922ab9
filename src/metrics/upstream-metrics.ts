import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** What the proxy costs etcd and how its members fare: reachability, calls started upstream, the member pool, failovers, the loop guard. */
export interface UpstreamMetrics {
  readonly upstreamUp: Gauge;
  readonly readBarrierCalls: Counter;
  /** Every call the proxy starts upstream, streams once when opened: what it costs etcd, and why. */
  readonly upstreamCalls: Counter<'method' | 'reason'>;
  /** Upstream members the pool dials, and how many of them answered their last probe. */
  readonly upstreamMembers: Gauge;
  readonly upstreamMembersHealthy: Gauge;
  /** Per member: 1 when its last probe answered. */
  readonly upstreamMemberUp: Gauge<'member'>;
  readonly memberListRefreshes: Counter<'result'>;
  /** Work moved off a member: the mirror's watch resumed on another, or a read retried on another. */
  readonly upstreamFailovers: Counter<'kind'>;
  /** Endpoints dropped because they are the proxy itself. */
  readonly loopEndpointsDropped: Counter;
}

export function createUpstreamMetrics(registry: Registry): UpstreamMetrics {
  return {
    upstreamUp: new Gauge({
      name: `${METRIC_PREFIX}upstream_up`,
      help: '1 while some upstream member answers within the upstream timeout, else 0',
      registers: [registry],
    }),
    readBarrierCalls: new Counter({
      name: `${METRIC_PREFIX}read_barrier_upstream_calls_total`,
      help: 'Linearizable upstream calls made to serve linearizable reads from the mirror',
      registers: [registry],
    }),
    upstreamCalls: new Counter({
      name: `${METRIC_PREFIX}upstream_calls_total`,
      help: 'Calls the proxy started upstream, by method (KV/Range) and reason (client, read-barrier, mirror-watch, liveness...); a stream counts once, when opened',
      labelNames: ['method', 'reason'] as const,
      registers: [registry],
    }),
    upstreamMembers: new Gauge({
      name: `${METRIC_PREFIX}upstream_members`,
      help: 'Upstream members known (from discovery and the member list refresh)',
      registers: [registry],
    }),
    upstreamMembersHealthy: new Gauge({
      name: `${METRIC_PREFIX}upstream_members_healthy`,
      help: 'Upstream members whose last probe (Status with require-leader) answered',
      registers: [registry],
    }),
    upstreamMemberUp: new Gauge({
      name: `${METRIC_PREFIX}upstream_member_up`,
      help: '1 when the member answered its last probe, 0 when not',
      labelNames: ['member'],
      registers: [registry],
    }),
    memberListRefreshes: new Counter({
      name: `${METRIC_PREFIX}member_list_refreshes_total`,
      help: 'Member list refreshes (Cluster.MemberList, or discovery while no member is known) by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    upstreamFailovers: new Counter({
      name: `${METRIC_PREFIX}upstream_failovers_total`,
      help: "Work moved to another member: kind=mirror_watch (the mirror's upstream watch), read_retry (a forwarded read), write_not_sent (a write whose member could not be reached)",
      labelNames: ['kind'],
      registers: [registry],
    }),
    loopEndpointsDropped: new Counter({
      name: `${METRIC_PREFIX}loop_endpoints_dropped_total`,
      help: 'Upstream endpoints dropped because they are this proxy itself (loop guard)',
      registers: [registry],
    }),
  };
}
