import type { CoreContext } from './context';
import type { CoreService } from './call';
import { forwardUnary } from './forward';
import { forwardingService, rpcRef } from './forwarding-service';
import { answeringTierProbes } from './tier-probe';

const SERVICE = 'etcdserverpb.Maintenance';

/**
 * Maintenance: forwarded to the member the pool picks. Which calls only read
 * (Status, Hash, HashKV, Snapshot, an Alarm that lists) and which change
 * state is the method table's (etcd/method-kinds.ts). The one exception is a
 * liveness probe of a proxy in front of this one, a Status this proxy
 * answers itself (tier-probe.ts).
 */
export function createMaintenanceService(ctx: CoreContext): CoreService {
  const status = rpcRef(SERVICE, 'Status');
  return forwardingService(ctx, SERVICE, { overrides: { Status: answeringTierProbes(ctx, status, forwardUnary(ctx, status)) } });
}
