import type { Logger } from '../log';
import type { UpstreamEndpoint } from '../etcd/endpoint';
import { pointsAtSelf, type SelfAddresses } from './loop-guard';

/** Endpoints found to be this proxy, or to lead back to it through other proxies, remembered so that each is logged and counted once. */
export interface SelfFilter {
  /** Where the proxy listens, once it does (before, only endpoints already marked are left out). */
  know(addresses: SelfAddresses): void;
  /** Leaves out, with an error log, every endpoint that is this proxy. */
  without(candidates: readonly UpstreamEndpoint[]): Promise<UpstreamEndpoint[]>;
  /**
   * A member answered with the proxy's own loop marker, having gone through
   * `proxiesInLoop` proxies (1: this one alone): false when its URL was
   * already known as looping back.
   */
  markLooped(url: string, proxiesInLoop: number): boolean;
}

export function createSelfFilter(log: Logger, selfDropped: () => void): SelfFilter {
  const selfUrls = new Set<string>();
  let self: SelfAddresses | null = null;
  return {
    know(addresses) {
      self = addresses;
    },
    async without(candidates) {
      const kept: UpstreamEndpoint[] = [];
      for (const endpoint of candidates) {
        const isSelf = selfUrls.has(endpoint.url) || (self !== null && (await pointsAtSelf(endpoint, self)));
        if (!isSelf) {
          kept.push(endpoint);
          continue;
        }
        if (!selfUrls.has(endpoint.url)) {
          selfUrls.add(endpoint.url);
          selfDropped();
          log.error({ endpoint: endpoint.url }, 'upstream endpoint is this proxy itself: dropped (it would forward to itself)');
        }
      }
      return kept;
    },
    markLooped(url, proxiesInLoop) {
      if (selfUrls.has(url)) return false;
      selfUrls.add(url);
      selfDropped();
      if (proxiesInLoop <= 1) log.error({ endpoint: url }, "upstream member answered with this proxy's own loop marker: dropped (it is this proxy)");
      else {
        log.error(
          { endpoint: url, proxiesInLoop },
          'upstream member leads back to this proxy: a cycle of proxies, each an upstream of the next; dropped, so that no call goes round it (every tier must lead to etcd)',
        );
      }
      return true;
    },
  };
}
