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
