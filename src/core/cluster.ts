import { status } from '@grpc/grpc-js';
import type { CoreContext } from './context';
import { forwardUnary, observeCall } from './forward';
import type { CoreService, UnaryHandler } from './call';
import { forwardingService, rpcRef } from './forwarding-service';
import type { TierMembers } from './tier-members';
import { toStatus } from '../etcd/errors';
import { serviceMethods, type AnyMethodDefinition } from '../etcd/proto';

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
      if (name === 'MemberList' && ctx.tierMembers !== undefined) return [name, listTier(ctx, ctx.tierMembers, method)];
      return [name, forwardUnary(ctx, rpcRef(SERVICE, name), { transformResponse })];
    }),
  );
  return forwardingService(ctx, SERVICE, { overrides });
}

/**
 * MemberList with --resolver-prefix: the live proxies of the tier, as
 * grpc-proxy answers it (tier-members.ts), never the cluster's members.
 * The other Cluster calls change the cluster and go to etcd as before.
 */
function listTier(ctx: CoreContext, tier: Pick<TierMembers, 'list'>, method: AnyMethodDefinition): UnaryHandler {
  const rpc = rpcRef(SERVICE, 'MemberList');
  return (_call, callback) => {
    const started = performance.now();
    tier.list().then(
      ({ answer, source }) => {
        observeCall(ctx, rpc, status.OK, started, source);
        callback(null, method.responseSerialize(answer));
      },
      (error: unknown) => {
        const failed = toStatus(error);
        observeCall(ctx, rpc, failed.code, started, 'proxy');
        callback(failed);
      },
    );
  };
}
