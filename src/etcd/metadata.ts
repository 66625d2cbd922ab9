/** Response metadata (and HTTP header) marking an answer the upstream could not confirm. */
export const STALE_HEADER = 'x-etcd-cache-proxy-stale';
