import { status } from '@grpc/grpc-js';
import type { CoreContext } from './context';
import type { CoreService, UnaryCall, UnaryCallback, UnaryHandler } from './call';
import { forwardUnary, observeCall } from './forward';
import { forwardingService, rpcRef } from './forwarding-service';
import { ETCD_ERRORS, ProxyError, toStatus } from '../etcd/errors';
import { etcdMethod } from '../etcd/proto';
import { mirrorHeader } from '../mirror/response-header';
import type { MirrorReadDeps } from './mirror-read-deps';

const SERVICE = 'etcdserverpb.Auth';
const authenticateMethod = etcdMethod(SERVICE, 'Authenticate');

interface LoginRequest {
  name?: string;
  password?: string;
}

/**
 * Auth: forwarded, so tokens are issued and checked by the upstream itself.
 * A login that succeeds teaches the proxy whose token it is (and that auth
 * is on), for deciding what the mirror may serve that client; with
 * --auth-offline-login it is also remembered (a slow hash), so that while etcd
 * is down the proxy can answer the same login itself, with a token of its own.
 */
export function createAuthService(ctx: CoreContext): CoreService {
  const reads = ctx.mirrorReads;
  if (reads === null) return forwardingService(ctx, SERVICE);
  const rpc = rpcRef(SERVICE, 'Authenticate');
  const forward = forwardUnary(ctx, rpc);
  const online: UnaryHandler = (call, callback) =>
    forward(call, (error, response) => {
      if (error === null && response !== undefined && response !== null) {
        const { name, password } = authenticateMethod.requestDeserialize(call.request) as LoginRequest;
        const { token } = authenticateMethod.responseDeserialize(response) as { token?: string };
        if (name !== undefined && token !== undefined && token !== '') {
          reads.directory.learn(name, token);
          reads.auth.loginSeen();
          ctx.metrics.authLogins.inc({ source: 'upstream' });
          if (password !== undefined) void reads.offlineLogins?.remember(name, password);
        }
      } else if (error !== null && reads.offlineLogins !== null && (error as { details?: unknown }).details === ETCD_ERRORS.authFailed.details) {
        // etcd refused it: if it is the password kept for offline logins, that one no longer works (changed, or the user is gone).
        const { name, password } = authenticateMethod.requestDeserialize(call.request) as LoginRequest;
        if (name !== undefined && password !== undefined) reads.offlineLogins.upstreamRefused(name, password).catch(() => undefined);
      }
      callback(error, response);
    });
  const authenticate: UnaryHandler = (call, callback) => {
    if (reads.offlineLogins !== null && reads.liveness.isLost() && reads.auth.isEnabled()) offline(ctx, reads, call, callback);
    else online(call, callback);
  };
  return forwardingService(ctx, SERVICE, { overrides: { Authenticate: authenticate } });
}

/**
 * While etcd is down: the login is checked against the last one that
 * succeeded upstream, and answered with a token of the proxy's that ends
 * when etcd answers again, or when that upstream login is
 * --auth-offline-max-age old, whichever comes first.
 */
function offline(ctx: CoreContext, reads: MirrorReadDeps, call: UnaryCall, callback: UnaryCallback): void {
  const rpc = rpcRef(SERVICE, 'Authenticate');
  const started = performance.now();
  const refuse = (error: ProxyError): void => {
    observeCall(ctx, rpc, error.code, started, 'proxy');
    callback(toStatus(error));
  };
  const logins = reads.offlineLogins;
  if (logins === null) {
    refuse(new ProxyError('upstreamLost'));
    return;
  }
  let request: LoginRequest;
  try {
    request = authenticateMethod.requestDeserialize(call.request) as LoginRequest;
  } catch {
    refuse(new ProxyError('authFailed'));
    return;
  }
  const name = request.name ?? '';
  logins.verify(name, request.password ?? '', call.getPeer?.()).then(
    (verdict) => {
      if (verdict.kind !== 'ok') {
        refuse(new ProxyError('authFailed'));
        return;
      }
      const token = reads.directory.issueProxyToken(name, verdict.expiresAt);
      ctx.metrics.authLogins.inc({ source: 'proxy' });
      observeCall(ctx, rpc, status.OK, started, 'proxy');
      callback(null, authenticateMethod.responseSerialize({ header: mirrorHeader(reads.store.meta()), token }));
    },
    (error: unknown) => refuse(new ProxyError('internal', { cause: error })),
  );
}
