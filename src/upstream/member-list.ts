import type { Logger } from '../log';
import type { UpstreamEndpoint } from '../etcd/endpoint';
import { firstUsable, toEndpoints } from './discovery';
import type { UpstreamPool } from './pool';
import { callUpstream } from './unary';
import { kindOfHeaders, type UpstreamKind } from './upstream-kind';

const MEMBER_LIST_TIMEOUT_MS = 2_000;

interface MemberListResponse {
  members?: { name?: string; clientURLs?: string[] }[];
}

/** A member list, and what the member that gave it is. */
export interface ListedMembers {
  readonly endpoints: UpstreamEndpoint[];
  /**
   * 'proxy': an etcd-cache-proxy answered, whose list names the client URLs
   * it advertises (itself, or the proxies of its tier), not etcd's members.
   */
  readonly answeredBy: Exclude<UpstreamKind, 'unknown'>;
}

/**
 * The cluster's own member list (Cluster.MemberList), from the first member
 * of the pool that answers with a usable client URL; throws with every
 * member's failure when none does. What the answer's headers say the member
 * is goes to the pool too.
 */
export async function fetchMemberList(pool: UpstreamPool, log: Logger): Promise<ListedMembers> {
  const failures: string[] = [];
  for (const member of pool.candidates()) {
    try {
      let answeredBy: Exclude<UpstreamKind, 'unknown'> = 'etcd';
      const response = await callUpstream<MemberListResponse>(member.client, 'etcdserverpb.Cluster', 'MemberList', {}, {
        deadlineMs: MEMBER_LIST_TIMEOUT_MS,
        reason: 'member-refresh',
        onHeaders: (headers) => (answeredBy = kindOfHeaders(headers)),
      });
      pool.learnKind(member, answeredBy);
      const found = toEndpoints((response.members ?? []).flatMap((m) => firstUsable(m.clientURLs ?? [])));
      for (const { url, reason } of found.skipped) log.warn({ url, reason }, 'member client URL left out');
      if (found.endpoints.length > 0) return { endpoints: found.endpoints, answeredBy };
      failures.push(`${member.endpoint.url}: no member with a usable client URL`);
    } catch (error) {
      failures.push(`${member.endpoint.url}: ${(error as { details?: string }).details ?? String(error)}`);
    }
  }
  throw new Error(failures.length === 0 ? 'no member known' : failures.join('; '));
}
