import type { ApiContext } from './context';
import { forwardingService, type ServiceBinding } from './forwarding-service';

/**
 * Maintenance: forwarded to the member the pool picks. Status, Hash and
 * HashKV only read; Alarm, Defragment, MoveLeader and Downgrade change state.
 */
export function createMaintenanceService(ctx: ApiContext): ServiceBinding {
  return forwardingService(ctx, 'etcdserverpb.Maintenance', { reads: new Set(['Status', 'Hash', 'HashKV']) });
}
