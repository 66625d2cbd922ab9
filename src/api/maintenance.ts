import type { ApiContext } from './context';
import type { CoreService } from './call';
import { forwardingService } from './forwarding-service';

/**
 * Maintenance: forwarded to the member the pool picks. Status, Hash and
 * HashKV only read; Alarm, Defragment, MoveLeader and Downgrade change state.
 */
export function createMaintenanceService(ctx: ApiContext): CoreService {
  return forwardingService(ctx, 'etcdserverpb.Maintenance', { reads: new Set(['Status', 'Hash', 'HashKV']) });
}
