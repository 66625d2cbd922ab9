import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metric-prefix';

/** etcd's auth as the proxy sees it: whether etcd asks for it, logins, decisions, the users it holds. */
export interface AuthMetrics {
  readonly upstreamAuthRequired: Gauge;
  /** Logins that passed through the proxy and succeeded upstream. */
  readonly authLogins: Counter<'source'>;
  /** With auth on: decisions on what the mirror may serve a client (permit, refuse, forward). */
  readonly authDecisions: Counter<'result'>;
  /** Users whose permissions the proxy holds. */
  readonly authUsers: Gauge;
  /** Reads of a user's roles and permissions from etcd, by result. */
  readonly authPermissionReads: Counter<'result'>;
}

export function createAuthMetrics(registry: Registry): AuthMetrics {
  return {
    upstreamAuthRequired: new Gauge({
      name: `${METRIC_PREFIX}upstream_auth_required`,
      help: '1 while the upstream refuses anonymous reads (auth enabled): the mirror serves nothing and every request is forwarded',
      registers: [registry],
    }),
    authLogins: new Counter({
      name: `${METRIC_PREFIX}auth_logins_total`,
      help: 'Logins that passed through the proxy and succeeded, by who answered them (upstream)',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    authDecisions: new Counter({
      name: `${METRIC_PREFIX}auth_decisions_total`,
      help: 'With auth on: decisions on what the mirror may serve a client, by result (permit, refuse, forward: a token the proxy did not see issued)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    authUsers: new Gauge({
      name: `${METRIC_PREFIX}auth_users`,
      help: 'Users whose roles and permissions the proxy holds',
      // Every serving process (--workers) holds the same users: summed, they would count N times.
      aggregator: 'max',
      registers: [registry],
    }),
    authPermissionReads: new Counter({
      name: `${METRIC_PREFIX}auth_permission_reads_total`,
      help: "Reads of a user's roles and permissions from etcd (UserGet and RoleGet with the user's token), by result",
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
}
