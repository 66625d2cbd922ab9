import type { ApiContext } from './context';
import type { CoreService, UnaryHandler } from './call';
import { forwardUnary } from './forward';
import { forwardingService, forwardOptions, rpcRef } from './forwarding-service';
import { etcdMethod } from '../etcd/proto';

const SERVICE = 'etcdserverpb.Auth';
const READS = new Set(['AuthStatus', 'UserGet', 'UserList', 'RoleGet', 'RoleList']);

/**
 * Auth: forwarded, so tokens are issued and checked by the upstream itself.
 * A login that succeeds teaches the proxy whose token it is (and that auth
 * is on), for deciding what the mirror may serve that client.
 */
export function createAuthService(ctx: ApiContext): CoreService {
  const options = { reads: READS };
  const reads = ctx.mirrorReads;
  if (reads === null) return forwardingService(ctx, SERVICE, options);
  const method = etcdMethod(SERVICE, 'Authenticate');
  const forward = forwardUnary(ctx, rpcRef(SERVICE, 'Authenticate'), forwardOptions(ctx, 'Authenticate', options));
  const authenticate: UnaryHandler = (call, callback) =>
    forward(call, (error, response) => {
      if (error === null && response !== undefined && response !== null) {
        const { name } = method.requestDeserialize(call.request) as { name?: string };
        const { token } = method.responseDeserialize(response) as { token?: string };
        if (name !== undefined && token !== undefined && token !== '') {
          reads.directory.learn(name, token);
          ctx.metrics.authLogins.inc({ source: 'upstream' });
          reads.auth.loginSeen();
        }
      }
      callback(error, response);
    });
  return forwardingService(ctx, SERVICE, { ...options, overrides: { Authenticate: authenticate } });
}
