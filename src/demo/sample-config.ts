/**
 * A small configuration shaped as Apache APISIX keeps it in etcd: JSON
 * values under `/apisix/`, one key per object, routes that point at
 * services and upstreams by id.
 */
export const CONFIG_PREFIX = '/apisix/';

export interface ConfigEntry {
  readonly key: string;
  readonly value: string;
}

const upstreams = [
  { id: '1', name: 'catalog', nodes: { '10.0.1.11:8080': 1, '10.0.1.12:8080': 1 } },
  { id: '2', name: 'checkout', nodes: { '10.0.2.21:8080': 2, '10.0.2.22:8080': 1 } },
  { id: '3', name: 'accounts', nodes: { '10.0.3.31:9000': 1 } },
];

const services = [
  { id: '1', name: 'shop', upstream_id: '1', plugins: { 'limit-count': { count: 500, time_window: 60, key: 'remote_addr' } } },
  { id: '2', name: 'payments', upstream_id: '2', plugins: { 'key-auth': {} } },
];

const routes = [
  { id: '1', name: 'products', uris: ['/api/products', '/api/products/*'], methods: ['GET'], service_id: '1' },
  { id: '2', name: 'search', uri: '/api/search', methods: ['GET'], service_id: '1' },
  { id: '3', name: 'cart', uri: '/api/cart/*', methods: ['GET', 'POST', 'DELETE'], service_id: '2' },
  { id: '4', name: 'pay', uri: '/api/pay', methods: ['POST'], service_id: '2' },
  { id: '5', name: 'login', uri: '/api/login', methods: ['POST'], upstream_id: '3' },
  { id: '6', name: 'profile', uri: '/api/me', methods: ['GET', 'PUT'], upstream_id: '3', plugins: { 'jwt-auth': {} } },
];

export function sampleConfig(): ConfigEntry[] {
  const entry = (kind: string, object: { readonly id: string; readonly [field: string]: unknown }): ConfigEntry => ({ key: `${CONFIG_PREFIX}${kind}/${object.id}`, value: JSON.stringify(object) });
  return [
    ...upstreams.map((upstream) => entry('upstreams', { ...upstream, type: 'roundrobin' })),
    ...services.map((service) => entry('services', service)),
    ...routes.map((route) => entry('routes', route)),
  ];
}

/** The route the walkthrough changes once etcd is back: another method allowed, as an operator would. */
export function changedRoute(): ConfigEntry {
  const route = { ...routes[0], methods: ['GET', 'HEAD'] };
  return { key: `${CONFIG_PREFIX}routes/${route.id}`, value: JSON.stringify(route) };
}
