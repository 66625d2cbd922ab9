import type { ApiContext } from './context';
import type { CoreService } from './call';
import { forwardingService } from './forwarding-service';

/**
 * Maintenance: forwarded to the member the pool picks. Which calls only read
 * (Status, Hash, HashKV, Snapshot, an Alarm that lists) and which change
 * state is the method table's (etcd/method-kinds.ts).
 */
export function createMaintenanceService(ctx: ApiContext): CoreService {
  return forwardingService(ctx, 'etcdserverpb.Maintenance');
}
