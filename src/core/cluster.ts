import type { CoreContext } from './context';
import { forwardUnary } from './forward';
import type { CoreService } from './call';
import { forwardingService, rpcRef } from './forwarding-service';
import { serviceMethods } from '../etcd/proto';

interface MemberMessage {
  clientURLs?: string[];
}
interface MembersResponse {
  member?: MemberMessage;
  members?: MemberMessage[];
}

const SERVICE = 'etcdserverpb.Cluster';
/** Every Cluster RPC answers with the member list, so each one is rewritten. */
const MEMBER_LIST_METHODS = ['MemberList', 'MemberAdd', 'MemberRemove', 'MemberUpdate', 'MemberPromote'] as const;

/**
 * Replaces every member's client URLs with the proxy's own advertised URL, so
 * a client that syncs its endpoints from the member list (clientv3's
 * AutoSyncInterval, etcdctl --discovery) keeps talking to the proxy instead of
 * slipping past it. IDs, names and peer URLs stay real. A member with no
 * client URL yet (added, not started) keeps none.
 */
export function rewriteClientUrls(response: MembersResponse, advertiseClientUrl: string): MembersResponse {
  const rewrite = (member: MemberMessage): void => {
    if (member.clientURLs !== undefined && member.clientURLs.length > 0) member.clientURLs = [advertiseClientUrl];
  };
  if (response.member !== undefined) rewrite(response.member);
  response.members?.forEach(rewrite);
  return response;
}

export function createClusterService(ctx: CoreContext): CoreService {
  const methods = serviceMethods(SERVICE);
  const overrides = Object.fromEntries(
    MEMBER_LIST_METHODS.map((name) => {
      const method = methods[name];
      if (method === undefined) throw new Error(`etcd-cache-proxy: ${SERVICE}.${name} missing from proto/`);
      const transformResponse = (raw: Buffer): Buffer => {
        const decoded = method.responseDeserialize(raw) as MembersResponse;
        return method.responseSerialize(rewriteClientUrls(decoded, ctx.advertiseClientUrl()));
      };
      return [name, forwardUnary(ctx, rpcRef(SERVICE, name), { transformResponse })];
    }),
  );
  return forwardingService(ctx, SERVICE, { overrides });
}
