import type { ApiContext } from './context';
import { forwardingService, type ServiceBinding } from './forwarding-service';

/**
 * KV: Range is a read and may be retried on another member; Put,
 * DeleteRange, Txn and Compact are forwarded once. A Txn is treated as a
 * write until the mirror can tell a read-only one apart.
 */
export function createKvService(ctx: ApiContext): ServiceBinding {
  return forwardingService(ctx, 'etcdserverpb.KV', { reads: new Set(['Range']) });
}
