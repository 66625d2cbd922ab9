/** Every instrument the proxy registers is named under this prefix. */
export const METRIC_PREFIX = 'etcd_cache_proxy_';
