import type { DiscoverySource } from '../settings/types';
import type { Logger } from '../log';
import { discover, toEndpoints, type Discovered } from './discovery';
import type { UpstreamEndpoint } from '../etcd/endpoint';
import type { SelfAddresses } from './loop-guard';
import { fetchMemberList, membersToFollow, type ListedMembers } from './member-list';
import type { UpstreamMember, UpstreamPool } from './pool';
import { createSelfFilter } from './self-filter';
import type { TlsFiles } from '../tls/upstream-tls';
import type { UpstreamKind } from './upstream-kind';

/** While no member is known, discovery is retried this often (docs/design.md, "Members"). */
const RETRY_WHILE_NONE_MS = 1_000;

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
  /** A member answered with the proxy's own loop marker: it is this proxy (1), or a cycle of that many proxies leads back here. */
  dropSelf(member: UpstreamMember, proxiesInLoop: number): void;
  /** One refresh now (tests, and the first one at start). */
  refresh(): Promise<void>;
  /** New discovery settings (a reload): the member list is found again from them, then refreshed from the cluster. */
  reconfigure(next: MembershipSettings): void;
  close(): void;
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

/** Saves the member list with the mirror when it changed; a failure to save costs only a restart during an outage. */
function rememberMembers(store: MemberListMemory, source: string, clientUrls: string[], log: Logger): void {
  const saved = store.members();
  if (saved !== null && saved.source === source && saved.clientUrls.join() === clientUrls.join()) return;
  try {
    store.saveMembers({ source, clientUrls });
  } catch (error) {
    log.warn({ err: error }, 'could not save the member list with the mirror');
  }
}

/** Discovery from the settings, with a warning for each client URL it had to leave out. */
async function discoverLogged(settings: MembershipSettings, log: Logger): Promise<Discovered> {
  const found = await discover(settings.source, settings.endpoints, settings.tls);
  for (const { url, reason } of found.skipped) log.warn({ url, reason }, 'discovered client URL left out');
  return found;
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
  let settings: MembershipSettings = { source: deps.source, endpoints: deps.endpoints, syncIntervalMs: deps.syncIntervalMs, tls: deps.tls };
  let sourceKey = describeSource(settings.source, settings.endpoints);
  const selfFilter = createSelfFilter(log, () => metrics.selfDropped());
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let refreshing: Promise<void> | null = null;
  let lastFailure = '';
  const memberUrls = (): string[] => pool.members().map((m) => m.endpoint.url);
  /** The endpoints the operator gave: static --endpoints, or what discovery (SRV, peers) found last. */
  let given: readonly UpstreamEndpoint[] = settings.source.kind === 'endpoints' ? settings.endpoints : [];
  /** What answered the last member list: only a change is logged. */
  let upstreamKind: UpstreamKind = 'unknown';
  /** The loopback URLs an upstream proxy listed last and were left out: only a change is logged. */
  let loopbackLeftOut = '';

  const apply = async (next: readonly UpstreamEndpoint[]): Promise<boolean> => {
    const usable = await selfFilter.without(next);
    if (closed || usable.length === 0) return false;
    pool.replace(usable);
    rememberMembers(store, sourceKey, memberUrls(), log);
    return true;
  };
  /** What discovery found is what the proxy was given: a proxy upstream's member list never takes it away. */
  const applyDiscovered = (found: readonly UpstreamEndpoint[]): Promise<boolean> => {
    given = found;
    return apply(found);
  };

  /** The members to follow after a member list (membersToFollow), with a log line when what answered changes. */
  const followed = (listed: ListedMembers): UpstreamEndpoint[] => {
    if (listed.answeredBy !== upstreamKind) {
      upstreamKind = listed.answeredBy;
      if (listed.answeredBy === 'proxy') log.info({ given: given.map((e) => e.url), listed: listed.endpoints.map((e) => e.url) }, 'the upstream is a tier of etcd-cache-proxies: the endpoints given are kept, the ones it lists are added');
    }
    const { endpoints, loopbackLeftOut: leftOut } = membersToFollow(given, listed);
    if (leftOut.join() !== loopbackLeftOut) {
      loopbackLeftOut = leftOut.join();
      if (leftOut.length > 0) log.warn({ member: listed.answeredFrom.url, leftOut }, 'upstream proxy lists loopback client URLs, which name its own machine: not dialled from here (set its --advertise-client-url)');
    }
    return endpoints;
  };

  const refreshOnce = async (): Promise<void> => {
    try {
      // Nothing dialled yet (or everything dropped): ask the source again.
      const applied =
        pool.members().length === 0
          ? await applyDiscovered((await discover(settings.source, settings.endpoints, settings.tls)).endpoints)
          : await apply(followed(await fetchMemberList(pool, log)));
      if (!applied) throw new Error('every member found is this proxy itself');
      metrics.refreshed('ok');
      if (lastFailure !== '') log.info({ members: memberUrls() }, 'member list refreshed again');
      lastFailure = '';
    } catch (error) {
      metrics.refreshed('error');
      const message = error instanceof Error ? error.message : String(error);
      if (message !== lastFailure) log.warn({ err: message, keeping: memberUrls() }, 'member list refresh failed; keeping the last good list');
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
    const delay = pool.members().length === 0 ? RETRY_WHILE_NONE_MS : settings.syncIntervalMs;
    timer = setTimeout(() => {
      void refresh().then(schedule);
    }, delay);
    timer.unref();
  };

  /** A first refresh from the cluster when some member is known, then the loop. */
  const refreshThenLoop = async (): Promise<void> => {
    if (pool.members().length > 0) await refresh();
    schedule();
  };

  return {
    start(addresses) {
      selfFilter.know(addresses);
      void (async () => {
        // The static and remembered members the pool started with may include this proxy.
        const checked = await selfFilter.without(pool.members().map((m) => m.endpoint));
        if (checked.length < pool.members().length) pool.replace(checked);
        if (settings.source.kind !== 'endpoints' || pool.members().length === 0) {
          try {
            await applyDiscovered((await discoverLogged(settings, log)).endpoints);
            log.info({ source: settings.source.kind, members: memberUrls() }, 'upstream members discovered');
          } catch (error) {
            log.warn({ err: error instanceof Error ? error.message : String(error), remembered: memberUrls() }, 'discovery failed; retrying');
          }
        }
        await refreshThenLoop();
      })();
    },
    dropSelf(member, proxiesInLoop) {
      if (!selfFilter.markLooped(member.endpoint.url, proxiesInLoop)) return;
      pool.replace(pool.members().filter((m) => m !== member).map((m) => m.endpoint));
    },
    refresh,
    reconfigure(next) {
      settings = next;
      sourceKey = describeSource(settings.source, settings.endpoints);
      void (async () => {
        try {
          if (await applyDiscovered((await discoverLogged(settings, log)).endpoints)) log.info({ source: settings.source.kind, members: memberUrls() }, 'upstream members discovered again after a reload');
        } catch (error) {
          log.warn({ err: error instanceof Error ? error.message : String(error), keeping: memberUrls() }, 'discovery with the reloaded settings failed; keeping the members known');
        }
        await refreshThenLoop();
      })();
    },
    close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
