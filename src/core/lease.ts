import type { CoreContext } from './context';
import type { CoreService } from './call';
import { forwardingService } from './forwarding-service';
import { leaseKeepAliveHandler } from './lease-keepalive';

/**
 * Lease: forwarded, except that every LeaseKeepAlive stream shares one
 * upstream stream (see lease-keepalive.ts). Grant, Revoke and KeepAlive are
 * writes in the method table: refused while the upstream is lost, so that a
 * lock holder or leader sees the outage and steps down instead of believing
 * a false keep-alive. TimeToLive and Leases only read, so they may be retried
 * on another member.
 */
export function createLeaseService(ctx: CoreContext): CoreService {
  return forwardingService(ctx, 'etcdserverpb.Lease', { overrides: { LeaseKeepAlive: leaseKeepAliveHandler(ctx) } });
}
