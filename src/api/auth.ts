import type { ApiContext } from './context';
import { forwardingService, type ServiceBinding } from './forwarding-service';

/** Auth: forwarded, so tokens are issued and checked by the upstream itself. */
export function createAuthService(ctx: ApiContext): ServiceBinding {
  return forwardingService(ctx, 'etcdserverpb.Auth', {
    reads: new Set(['AuthStatus', 'UserGet', 'UserList', 'RoleGet', 'RoleList']),
  });
}
