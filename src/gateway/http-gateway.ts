import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Core } from '../core/core';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Readiness } from '../mirror/readiness';
import { probeUpstreamHealth } from '../upstream/health-probe';
import type { UpstreamPool } from '../upstream/pool';
import { sendComplete, type GatewayContext } from './gateway-context';
import type { HttpErrorPolicy } from './http-errors';
import type { GatewayDialect, RoutingAnswer } from './gateway-dialect';
import { setCorsHeaders } from './http-headers';
import { serveStream } from './json-stream';
import { serveUnary } from './json-unary';
import { findRoute } from './routes';
import { answerGrayscale, type GrayscaleAccess } from './grayscale-endpoint';
import { createVersionSource, type VersionSource } from './version-endpoint';

const HEALTH_PROBE_TIMEOUT_MS = 1_000;

export interface HttpGatewayDeps {
  readonly metrics: Metrics;
  readonly pool: UpstreamPool;
  readonly log: Logger;
  /** The proxy's etcd services: the JSON gateway calls them directly, as the gRPC server does. */
  readonly core: Core;
  /** The HTTP status of writes the proxy refuses; read on each refusal, so a reload changes it. */
  readonly errorPolicy: HttpErrorPolicy;
  readonly upstreamLost: () => boolean;
  readonly readiness: () => Readiness;
  /** What GET /metrics answers: this registry's exposition unless told otherwise (the sum over worker processes). */
  readonly scrape?: Scrape;
  /** GET /grayscale: what this machine withholds, and who may see it. */
  readonly grayscale: GrayscaleAccess;
}

export interface HttpGateway {
  /** The HTTP/1.1 server the protocol listener hands connections to; it never listens itself. */
  readonly server: Server;
  /** The same handler for HTTP/2 requests that are not gRPC (grpc/http2-routing.ts hands them over). */
  readonly http2Request: (request: Http2ServerRequest, response: Http2ServerResponse) => void;
}

/**
 * The HTTP/1.1 side of the client port, laid out as etcd's: its JSON
 * gateway under /v3/ (and /v3beta/), /version, /health, /metrics, and Go's
 * plain-text 404 and 405 answers elsewhere.
 */
export function createHttpGateway(deps: HttpGatewayDeps): HttpGateway {
  const version = createVersionSource(deps.core, deps.upstreamLost, deps.log);
  const ctx: GatewayContext = { core: deps.core, errors: deps.errorPolicy, log: deps.log, dialect: () => version.dialect() };
  // Node cuts a request whose body is still arriving after requestTimeout (5 min by default); a
  // watch's body may stay open for the life of the watch, to carry its cancel and progress requests.
  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    let label = 'other';
    try {
      label = handle(deps, ctx, version, request, response);
    } catch (error) {
      // A throw here would end the process: the request listener runs outside any promise.
      deps.log.error({ err: error, url: request.url }, 'http request failed');
      if (!response.headersSent) goError(response, 500, 'Internal Server Error');
      else response.destroy();
    }
    response.once('close', () => deps.metrics.httpRequests.inc({ path: label, status: String(response.statusCode) }));
  };
  const server = createServer({ requestTimeout: 0 }, onRequest);
  server.keepAliveTimeout = 65_000;
  return {
    server,
    // Node's HTTP/2 compatibility request and response stand in for HTTP/1's: the gateway uses only what
    // they share (method, url, headers, the body stream; status, headers, write, trailers, end, destroy),
    // and on HTTP/2 `response.socket.destroy()` ends the one stream, not the connection.
    http2Request: (request, response) => onRequest(request as unknown as IncomingMessage, response as unknown as ServerResponse),
  };
}

/** Routes one request; returns the path label its metrics carry. */
function handle(deps: HttpGatewayDeps, ctx: GatewayContext, version: VersionSource, request: IncomingMessage, response: ServerResponse): string {
  let path = new URL(request.url ?? '/', 'http://proxy').pathname;
  // etcd reads its older API prefix as the current one.
  if (path.startsWith('/v3beta/')) path = `/v3/${path.slice('/v3beta/'.length)}`;
  // etcd's client port allows every origin (its default --cors), on every path it has; the proxy's own
  // paths are not etcd's, and /grayscale names keys that not every page in a browser may see.
  if (!PROXY_OWN_PATHS.has(path)) {
    setCorsHeaders(response);
    if (request.method === 'OPTIONS') {
      response.end();
      return 'other';
    }
  }
  const fail = (error: unknown): void => {
    deps.log.error({ err: error, path }, 'http request failed');
    if (!response.headersSent) goError(response, 500, 'Internal Server Error');
    else response.destroy();
  };
  const route = path.startsWith('/v3/') ? findRoute(path) : undefined;
  // Only the JSON calls read their body. Any other is read and dropped, as Node's HTTP/1 server does by
  // itself: over HTTP/2 an unread body is left in flight, and clients (curl) then see the stream reset.
  if (route === undefined || request.method !== 'POST') request.resume();
  if (path.startsWith('/v3/')) {
    if (route === undefined) {
      sendRoutingError(response, ctx.dialect().routingError('not-found'));
      return 'other';
    }
    if (request.method !== 'POST') {
      sendRoutingError(response, ctx.dialect().routingError('method'));
      return route.path;
    }
    if (route.kind === 'unary') serveUnary(ctx, route, request, response).catch(fail);
    else serveStream(ctx, route, request, response);
    return route.path;
  }
  switch (path) {
    case '/v3':
      response.writeHead(301, { Location: '/v3/' });
      response.end();
      return 'other';
    case '/metrics':
      sendMetrics(deps.metrics, response, deps.scrape).catch(fail);
      return path;
    case '/health':
      if (allowGet(request, response)) sendHealth(deps.pool, ctx.dialect(), response).catch(fail);
      return path;
    case '/readyz':
      if (allowGet(request, response)) sendReadiness(deps.readiness(), response);
      return path;
    case '/grayscale':
      if (allowGet(request, response)) {
        answerGrayscale(deps.grayscale, request.headers).then((answer) => sendComplete(response, answer.status, { 'Content-Type': 'application/json' }, answer.body), fail);
      }
      return path;
    case '/version':
      if (allowGet(request, response)) {
        version.body().then((body) => sendComplete(response, 200, { 'Content-Type': 'application/json' }, body), fail);
      }
      return path;
    default:
      goError(response, 404, '404 page not found');
      return 'other';
  }
}

/** Paths etcd does not have: answered without etcd's CORS headers. */
const PROXY_OWN_PATHS: ReadonlySet<string> = new Set(['/readyz', '/grayscale']);

/** etcd's own handlers answer GET only, with 405 and an Allow header otherwise. */
function allowGet(request: IncomingMessage, response: ServerResponse): boolean {
  if (request.method === 'GET') return true;
  response.setHeader('Allow', 'GET');
  goError(response, 405, 'Method Not Allowed');
  return false;
}

/** Go's http.Error: a plain-text line. */
function goError(response: ServerResponse, httpStatus: number, text: string): void {
  sendComplete(response, httpStatus, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }, `${text}\n`);
}

/** grpc-gateway's answer to a path under /v3/ it has no call for, or a method other than POST. */
function sendRoutingError(response: ServerResponse, answer: RoutingAnswer): void {
  sendComplete(response, answer.status, { 'Content-Type': answer.contentType, ...(answer.noSniff ? { 'X-Content-Type-Options': 'nosniff' } : {}) }, answer.body);
}

/** A forwarding proxy is as healthy as the cluster behind it. */
async function sendHealth(pool: UpstreamPool, dialect: GatewayDialect, response: ServerResponse): Promise<void> {
  const result = await probeUpstreamHealth(pool, HEALTH_PROBE_TIMEOUT_MS);
  // etcd writes its /health body without a content type, which Go's server then sniffs as plain text.
  sendComplete(response, result.healthy ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8' }, dialect.healthBody(result.healthy, result.reason));
}

/** For orchestrators (Kubernetes readiness): 200 while reads are answered, fresh or stale; 503 with the reason otherwise. */
function sendReadiness(state: Readiness, response: ServerResponse): void {
  const body = {
    ...(state.ready ? { ready: true, state: state.state, revision: state.revision } : { ready: false, reason: state.reason }),
    ...(state.notMirrored === undefined ? {} : { notMirrored: state.notMirrored }),
    ...(state.upstream === undefined ? {} : { upstream: state.upstream }),
  };
  sendComplete(response, state.ready ? 200 : 503, { 'Content-Type': 'application/json' }, JSON.stringify(body));
}

/** The text exposition of the proxy's metrics. */
export type Scrape = () => Promise<string>;

export async function sendMetrics(metrics: Metrics, response: ServerResponse, scrape: Scrape = () => metrics.registry.metrics()): Promise<void> {
  const body = await scrape();
  response.writeHead(200, { 'content-type': metrics.registry.contentType });
  response.end(body);
}

/** The optional second listener (--metrics-addr) that serves /metrics only. */
export function createMetricsServer(metrics: Metrics, log: Logger, scrape?: Scrape): Server {
  return createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://proxy').pathname;
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('404 page not found\n');
      return;
    }
    sendMetrics(metrics, response, scrape).catch((error: unknown) => {
      log.error({ err: error }, 'metrics scrape failed');
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
}
