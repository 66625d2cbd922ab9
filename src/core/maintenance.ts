import type { CoreContext } from './context';
import type { CoreService } from './call';
import { forwardingService } from './forwarding-service';

/**
 * Maintenance: forwarded to the member the pool picks. Which calls only read
 * (Status, Hash, HashKV, Snapshot, an Alarm that lists) and which change
 * state is the method table's (etcd/method-kinds.ts).
 */
export function createMaintenanceService(ctx: CoreContext): CoreService {
  return forwardingService(ctx, 'etcdserverpb.Maintenance');
}
