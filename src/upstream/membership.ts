import type { DiscoverySource } from '../settings/types';
import type { Logger } from '../log';
import { discover, firstUsable, toEndpoints } from './discovery';
import type { UpstreamEndpoint } from '../etcd/endpoint';
import { pointsAtSelf, type SelfAddresses } from './loop-guard';
import type { UpstreamMember, UpstreamPool } from './pool';
import type { TlsFiles } from '../tls/upstream-tls';
import { callUpstream } from './unary';

/** While no member is known, discovery is retried this often (docs/design.md, "Members"). */
const RETRY_WHILE_NONE_MS = 1_000;
const MEMBER_LIST_TIMEOUT_MS = 2_000;

export interface MembershipMetrics {
  refreshed(result: 'ok' | 'error'): void;
  selfDropped(): void;
}

/** What a reload may change. */
export interface MembershipSettings {
  readonly source: DiscoverySource;
  readonly endpoints: readonly UpstreamEndpoint[];
  readonly syncIntervalMs: number;
  /** For https peers of --initial-cluster. */
  readonly tls: TlsFiles;
}

export interface MembershipDeps extends MembershipSettings {
  readonly pool: UpstreamPool;
  /** Where the last good member list is kept (the mirror's store), for a restart during an outage. */
  readonly store: MemberListMemory;
  readonly log: Logger;
  readonly metrics: MembershipMetrics;
}

export interface Membership {
  /** Starts discovery and the refresh loop, once the proxy knows its own address (the loop guard needs it). */
  start(self: SelfAddresses): void;
  /** A member answered with the proxy's own loop marker. */
  dropSelf(member: UpstreamMember): void;
  /** One refresh now (tests, and the first one at start). */
  refresh(): Promise<void>;
  /** New discovery settings (a reload): the member list is found again from them, then refreshed from the cluster. */
  reconfigure(next: MembershipSettings): void;
  close(): void;
}

interface MemberListResponse {
  members?: { name?: string; clientURLs?: string[] }[];
}

/** The discovery settings a persisted list belongs to: a list learned under other settings is not used. */
export function describeSource(source: DiscoverySource, endpoints: readonly UpstreamEndpoint[]): string {
  switch (source.kind) {
    case 'srv':
      return `srv:${source.domain}:${source.serviceName}`;
    case 'initial-cluster':
      return `initial-cluster:${source.peers.map((p) => `${p.name}=${p.peerUrl}`).join(',')}`;
    case 'endpoints':
      return `endpoints:${endpoints.map((e) => e.url).join(',')}`;
  }
}

/** The last good member list, and which discovery settings learned it. */
export interface SavedMembers {
  /** The discovery settings it was learned under; another setting ignores it. */
  readonly source: string;
  readonly clientUrls: readonly string[];
}

/**
 * Where the member list is kept between runs. The wiring hands over the
 * mirror's store; upstream/ knows nothing of how it is stored.
 */
export interface MemberListMemory {
  members(): SavedMembers | null;
  saveMembers(members: SavedMembers): void;
}

/** The endpoints to dial before anything is discovered: static ones, plus the list saved last time under the same settings. */
export function initialEndpoints(source: DiscoverySource, endpoints: readonly UpstreamEndpoint[], store: MemberListMemory): UpstreamEndpoint[] {
  const saved = store.members();
  const remembered = saved !== null && saved.source === describeSource(source, endpoints) ? toEndpoints(saved.clientUrls).endpoints : [];
  return [...(source.kind === 'endpoints' ? endpoints : []), ...remembered];
}

/**
 * Keeps the pool's member list true to the cluster: discovery at start (SRV,
 * peers, or static endpoints), then Cluster.MemberList every sync interval
 * from a reachable member. A failed refresh keeps the last good list; a good
 * one is saved with the mirror. Endpoints that are this proxy itself are
 * dropped with an error log, at start and at every refresh.
 */
export function createMembership(deps: MembershipDeps): Membership {
  const { pool, store, log, metrics } = deps;
  let { source, endpoints, syncIntervalMs, tls } = deps;
  let sourceKey = describeSource(source, endpoints);
  const selfUrls = new Set<string>();
  let self: SelfAddresses | null = null;
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let refreshing: Promise<void> | null = null;
  let lastFailure = '';

  /** Leaves out, with an error log, every endpoint that is this proxy. */
  const withoutSelf = async (candidates: readonly UpstreamEndpoint[]): Promise<UpstreamEndpoint[]> => {
    const kept: UpstreamEndpoint[] = [];
    for (const endpoint of candidates) {
      const isSelf = selfUrls.has(endpoint.url) || (self !== null && (await pointsAtSelf(endpoint, self)));
      if (!isSelf) {
        kept.push(endpoint);
        continue;
      }
      if (!selfUrls.has(endpoint.url)) {
        selfUrls.add(endpoint.url);
        metrics.selfDropped();
        log.error({ endpoint: endpoint.url }, 'upstream endpoint is this proxy itself: dropped (it would forward to itself)');
      }
    }
    return kept;
  };

  const apply = async (next: readonly UpstreamEndpoint[]): Promise<boolean> => {
    const usable = await withoutSelf(next);
    if (closed || usable.length === 0) return false;
    pool.replace(usable);
    const clientUrls = pool.members().map((m) => m.endpoint.url);
    const saved = store.members();
    if (saved === null || saved.source !== sourceKey || saved.clientUrls.join() !== clientUrls.join()) {
      try {
        store.saveMembers({ source: sourceKey, clientUrls });
      } catch (error) {
        log.warn({ err: error }, 'could not save the member list with the mirror');
      }
    }
    return true;
  };

  /** The cluster's own member list, from the first member that answers. */
  const memberList = async (): Promise<UpstreamEndpoint[]> => {
    const failures: string[] = [];
    for (const member of pool.candidates()) {
      try {
        const response = await callUpstream<MemberListResponse>(member.client, 'etcdserverpb.Cluster', 'MemberList', {}, { deadlineMs: MEMBER_LIST_TIMEOUT_MS, reason: 'member-refresh' });
        const found = toEndpoints((response.members ?? []).flatMap((m) => firstUsable(m.clientURLs ?? [])));
        for (const { url, reason } of found.skipped) log.warn({ url, reason }, 'member client URL left out');
        if (found.endpoints.length > 0) return found.endpoints;
        failures.push(`${member.endpoint.url}: no member with a usable client URL`);
      } catch (error) {
        failures.push(`${member.endpoint.url}: ${(error as { details?: string }).details ?? String(error)}`);
      }
    }
    throw new Error(failures.length === 0 ? 'no member known' : failures.join('; '));
  };

  const refreshOnce = async (): Promise<void> => {
    try {
      // Nothing dialled yet (or everything dropped): ask the source again.
      const next = pool.members().length === 0 ? (await discover(source, endpoints, tls)).endpoints : await memberList();
      if (!(await apply(next))) throw new Error('every member found is this proxy itself');
      metrics.refreshed('ok');
      if (lastFailure !== '') log.info({ members: pool.members().map((m) => m.endpoint.url) }, 'member list refreshed again');
      lastFailure = '';
    } catch (error) {
      metrics.refreshed('error');
      const message = error instanceof Error ? error.message : String(error);
      if (message !== lastFailure) log.warn({ err: message, keeping: pool.members().map((m) => m.endpoint.url) }, 'member list refresh failed; keeping the last good list');
      lastFailure = message;
    }
  };

  const refresh = (): Promise<void> => {
    refreshing ??= refreshOnce().finally(() => (refreshing = null));
    return refreshing;
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer !== null) clearTimeout(timer);
    const delay = pool.members().length === 0 ? RETRY_WHILE_NONE_MS : syncIntervalMs;
    timer = setTimeout(() => {
      void refresh().then(schedule);
    }, delay);
    timer.unref();
  };

  return {
    start(addresses) {
      self = addresses;
      void (async () => {
        // The static and remembered members the pool started with may include this proxy.
        const checked = await withoutSelf(pool.members().map((m) => m.endpoint));
        if (checked.length < pool.members().length) pool.replace(checked);
        if (source.kind !== 'endpoints' || pool.members().length === 0) {
          try {
            const found = await discover(source, endpoints, tls);
            for (const { url, reason } of found.skipped) log.warn({ url, reason }, 'discovered client URL left out');
            await apply(found.endpoints);
            log.info({ source: source.kind, members: pool.members().map((m) => m.endpoint.url) }, 'upstream members discovered');
          } catch (error) {
            log.warn({ err: error instanceof Error ? error.message : String(error), remembered: pool.members().map((m) => m.endpoint.url) }, 'discovery failed; retrying');
          }
        }
        if (pool.members().length > 0) await refresh();
        schedule();
      })();
    },
    dropSelf(member) {
      if (selfUrls.has(member.endpoint.url)) return;
      selfUrls.add(member.endpoint.url);
      metrics.selfDropped();
      log.error({ endpoint: member.endpoint.url }, 'upstream member answered with this proxy\'s own loop marker: dropped (it is this proxy)');
      pool.replace(pool.members().filter((m) => m !== member).map((m) => m.endpoint));
    },
    refresh,
    reconfigure(next) {
      ({ source, endpoints, syncIntervalMs, tls } = next);
      sourceKey = describeSource(source, endpoints);
      void (async () => {
        try {
          const found = await discover(source, endpoints, tls);
          for (const { url, reason } of found.skipped) log.warn({ url, reason }, 'discovered client URL left out');
          if (await apply(found.endpoints)) log.info({ source: source.kind, members: pool.members().map((m) => m.endpoint.url) }, 'upstream members discovered again after a reload');
        } catch (error) {
          log.warn({ err: error instanceof Error ? error.message : String(error), keeping: pool.members().map((m) => m.endpoint.url) }, 'discovery with the reloaded settings failed; keeping the members known');
        }
        if (pool.members().length > 0) await refresh();
        schedule();
      })();
    },
    close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
