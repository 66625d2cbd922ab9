import type { ApiContext } from './context';
import type { CoreService } from './call';
import { forwardingService } from './forwarding-service';

/** Auth: forwarded, so tokens are issued and checked by the upstream itself. */
export function createAuthService(ctx: ApiContext): CoreService {
  return forwardingService(ctx, 'etcdserverpb.Auth', {
    reads: new Set(['AuthStatus', 'UserGet', 'UserList', 'RoleGet', 'RoleList']),
  });
}
