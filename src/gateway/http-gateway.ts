import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { probeUpstreamHealth } from '../upstream/health-probe';
import type { UpstreamPool } from '../upstream/pool';

const HEALTH_PROBE_TIMEOUT_MS = 1_000;

export interface HttpGatewayDeps {
  readonly metrics: Metrics;
  readonly pool: UpstreamPool;
  readonly log: Logger;
}

/**
 * The HTTP/1.1 side of the client port. Today it answers /metrics and
 * /health; etcd's JSON gateway (/v3/...) is the next piece built here.
 * Unknown paths get Go's plain 404, as etcd's own mux answers them.
 */
export function createHttpGateway(deps: HttpGatewayDeps): Server {
  const server = createServer((request, response) => {
    handle(deps, request, response).catch((error: unknown) => {
      deps.log.error({ err: error, path: request.url }, 'http request failed');
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('internal error\n');
    });
  });
  server.keepAliveTimeout = 65_000;
  return server;
}

async function handle(deps: HttpGatewayDeps, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = new URL(request.url ?? '/', 'http://proxy').pathname;
  if (path === '/metrics' && request.method === 'GET') {
    await sendMetrics(deps.metrics, response);
    deps.metrics.httpRequests.inc({ path, status: '200' });
    return;
  }
  if (path === '/health' && request.method === 'GET') {
    // A forwarding proxy is as healthy as the cluster behind it.
    const result = await probeUpstreamHealth(deps.pool, HEALTH_PROBE_TIMEOUT_MS);
    const status = result.healthy ? 200 : 503;
    response.writeHead(status, { 'content-type': 'application/json' });
    const body = result.healthy ? { health: 'true' } : { health: 'false', reason: result.reason };
    response.end(JSON.stringify(body));
    deps.metrics.httpRequests.inc({ path, status: String(status) });
    return;
  }
  response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' });
  response.end('404 page not found\n');
  deps.metrics.httpRequests.inc({ path: 'other', status: '404' });
}

export async function sendMetrics(metrics: Metrics, response: ServerResponse): Promise<void> {
  const body = await metrics.registry.metrics();
  response.writeHead(200, { 'content-type': metrics.registry.contentType });
  response.end(body);
}

/** The optional second listener (--metrics-addr) that serves /metrics only. */
export function createMetricsServer(metrics: Metrics, log: Logger): Server {
  return createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://proxy').pathname;
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('404 page not found\n');
      return;
    }
    sendMetrics(metrics, response).catch((error: unknown) => {
      log.error({ err: error }, 'metrics scrape failed');
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
}
