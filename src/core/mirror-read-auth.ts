import type { UnaryCall } from './call';
import { ProxyError } from '../etcd/errors';
import type { MirrorReadDeps } from './mirror-read-deps';
import { FORWARD, type Route, type Wait } from './mirror-read-route';
import type { ReadSpec } from './mirror-read-spec';
import type { DecodedRead } from './request-memo';

/** With auth on, anything the mirror would answer (or wait to answer) first needs the caller's permission, as etcd checks it. */
export function needsPermission(deps: MirrorReadDeps, route: Route | Wait): boolean {
  return route !== FORWARD && (typeof route !== 'object' || route.kind === 'mirror') && deps.mirror.authEnabled();
}

/**
 * The caller's permission first (etcd's answer when it has none, etcd itself
 * when the proxy cannot decide), then the route the read would take anyway,
 * waited for by `wait` when it is not known yet.
 */
export async function routeWithPermission<Req>(
  deps: MirrorReadDeps,
  spec: ReadSpec<Req>,
  call: UnaryCall,
  decoded: DecodedRead<Req>,
  next: Route | Wait,
  wait: (decoded: DecodedRead<Req>, wait: Wait) => Promise<Route>,
): Promise<Route> {
  const ranges = spec.permissionRanges(decoded.request);
  if (ranges === null) return FORWARD;
  const permission = await deps.directory.decide(call.metadata, ranges);
  if (permission.kind === 'forward') return FORWARD;
  if (permission.kind === 'refuse') return { kind: 'refuse', error: new ProxyError(permission.error) };
  if (typeof next === 'object') return next;
  return wait(decoded, next);
}
