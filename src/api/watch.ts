import type { ApiContext } from './context';
import { forwardingService, type ServiceBinding } from './forwarding-service';

/**
 * Watch: each downstream stream is relayed one-to-one to an upstream stream
 * for now; the watch hub replaces this with fan-out from the mirror.
 */
export function createWatchService(ctx: ApiContext): ServiceBinding {
  return forwardingService(ctx, 'etcdserverpb.Watch', { reads: new Set() });
}
