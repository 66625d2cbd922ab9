/** Response metadata (and HTTP header) marking an answer the upstream could not confirm. */
export const STALE_HEADER = 'x-etcd-cache-proxy-stale';

/**
 * Response metadata on every Cluster and Maintenance answer this proxy makes
 * or relays (grpc/proxy-header.ts), its version as the value: etcd never
 * sends it, so whoever calls the proxy knows from the answer itself, not from
 * the address it dialled, that it talks to an etcd-cache-proxy and not to an
 * etcd member (a proxy in front of proxies keeps its configured endpoints
 * then: upstream/member-list.ts).
 */
export const PROXY_HEADER = 'x-etcd-cache-proxy';

/**
 * Request metadata on a proxy's liveness probes (Maintenance.Status with
 * etcd's require-leader metadata). etcd ignores it; a proxy upstream (a
 * regional tier) answers such a probe from what it knows of etcd itself
 * (core/tier-probe.ts) instead of passing it on, so a tier of edges costs
 * etcd no probes.
 */
export const LIVENESS_PROBE_HEADER = 'x-etcd-cache-proxy-probe';
