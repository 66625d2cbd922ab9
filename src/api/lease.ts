import type { ApiContext } from './context';
import { forwardingService, type ServiceBinding } from './forwarding-service';

/** Lease: all forwarded; TimeToLive and Leases only read, so they may be retried. */
export function createLeaseService(ctx: ApiContext): ServiceBinding {
  return forwardingService(ctx, 'etcdserverpb.Lease', { reads: new Set(['LeaseTimeToLive', 'LeaseLeases']) });
}
