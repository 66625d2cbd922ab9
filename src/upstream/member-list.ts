import { isIP } from 'node:net';
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
  /** The endpoint of the member that answered. */
  readonly answeredFrom: UpstreamEndpoint;
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
      if (found.endpoints.length > 0) return { endpoints: found.endpoints, answeredBy, answeredFrom: member.endpoint };
      failures.push(`${member.endpoint.url}: no member with a usable client URL`);
    } catch (error) {
      failures.push(`${member.endpoint.url}: ${(error as { details?: string }).details ?? String(error)}`);
    }
  }
  throw new Error(failures.length === 0 ? 'no member known' : failures.join('; '));
}

/** An address that names the machine it is used on (a name is judged by what it says, not resolved). */
function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/**
 * The members to follow after a member list. etcd's list as it is: removed
 * members dropped, new ones added. A proxy lists the URLs it advertises
 * (itself, or its tier) instead of etcd's members, so then every endpoint
 * given stays and what it lists is added: an edge given two regionals keeps
 * both, and fails over to the other when one dies. A proxy left at its
 * default advertises a loopback URL, which names its own machine: from
 * another machine that is this one (at worst something else listening
 * there), so such a URL is taken only from a proxy dialled on loopback.
 */
export function membersToFollow(given: readonly UpstreamEndpoint[], listed: ListedMembers): { endpoints: UpstreamEndpoint[]; loopbackLeftOut: string[] } {
  if (listed.answeredBy === 'etcd') return { endpoints: listed.endpoints, loopbackLeftOut: [] };
  const local = isLoopbackHost(listed.answeredFrom.host);
  const usable = listed.endpoints.filter((endpoint) => local || !isLoopbackHost(endpoint.host));
  const loopbackLeftOut = listed.endpoints.filter((endpoint) => !usable.includes(endpoint)).map((endpoint) => endpoint.url);
  return { endpoints: [...given, ...usable], loopbackLeftOut };
}
