import type { Counter } from 'prom-client';
import type { Metrics } from '../metrics';
import type { UpstreamPool } from './pool';

/** Keeps the member gauges true to the pool: counts, and one up/down series per member (a removed member's goes). */
export function observePool(pool: UpstreamPool, metrics: Metrics): void {
  const update = (): void => {
    const members = pool.members();
    metrics.upstreamMembers.set(members.length);
    metrics.upstreamMembersHealthy.set(members.filter((m) => pool.health(m) === 'healthy').length);
    for (const member of members) metrics.upstreamMemberUp.set({ member: member.endpoint.url }, pool.health(member) === 'healthy' ? 1 : 0);
  };
  pool.on('changed', (_added, removed) => {
    for (const member of removed) metrics.upstreamMemberUp.remove({ member: member.endpoint.url });
    update();
  });
  pool.on('healthy', update);
  pool.on('unhealthy', update);
  update();
}

/** Counts an upstream call into upstream_calls_total, keeping one series handle per method and reason (each call counts). */
export function upstreamCallCounter(metrics: Metrics): (method: string, reason: string) => void {
  const series = new Map<string, Counter.Internal>();
  return (method, reason) => {
    const key = `${method} ${reason}`;
    let counter = series.get(key);
    if (counter === undefined) {
      counter = metrics.upstreamCalls.labels({ method, reason });
      series.set(key, counter);
    }
    counter.inc();
  };
}
