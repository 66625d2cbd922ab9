import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import type { Logger } from '../log';
import { readJsonBody, type BodyError } from './body-reader';
import type { Core } from '../core/core';
import type { CoreCallOptions } from './core-call';
import type { GatewayDialect } from './gateway-dialect';
import { httpStatusFor, type HttpErrorPolicy } from './http-errors';
import { callOptionsFrom, canonicalHeaderName } from './http-headers';
import { encodeRequest } from './proto-json';
import type { GatewayRoute } from './routes';

/** What the JSON handlers share. */
export interface GatewayContext {
  /** The proxy's etcd services, called directly. */
  readonly core: Core;
  readonly errors: HttpErrorPolicy;
  readonly log: Logger;
  /** How the etcd behind the proxy writes its gateway's own answers, as last learned from its version. */
  readonly dialect: () => GatewayDialect;
}

/**
 * A complete answer with its length, as Go sends one (Node's writeHead would
 * fix the headers before the body is known and fall back to chunked).
 */
export function sendComplete(response: ServerResponse, httpStatus: number, headers: OutgoingHttpHeaders, body: string | Buffer): void {
  response.statusCode = httpStatus;
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) response.setHeader(name, value);
  response.setHeader('Content-Length', Buffer.byteLength(body));
  response.end(body);
}

/**
 * A unary-style error answer: etcd's JSON error body, with the trailers
 * grpc-gateway adds when the gRPC answer had them (etcd 3.5's: only for a
 * client that takes trailers).
 */
export function sendErrorBody(
  dialect: GatewayDialect,
  request: IncomingMessage,
  response: ServerResponse,
  httpStatus: number,
  code: status,
  message: string,
  trailers: ReadonlyArray<readonly [string, string]> = [],
): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.statusCode = httpStatus;
  response.setHeader('Content-Type', 'application/json');
  const body = dialect.errorBody(code, message);
  if (trailers.length === 0 || !dialect.forwardsTrailers(request.headers)) {
    sendComplete(response, httpStatus, {}, body);
    return;
  }
  response.setHeader('Trailer', [...new Set(trailers.map(([key]) => `Grpc-Trailer-${canonicalHeaderName(key)}`))].join(', '));
  response.write(body);
  response.addTrailers(trailers.map(([key, value]): [string, string] => [`Grpc-Trailer-${canonicalHeaderName(key)}`, value]));
  response.end();
}

/** A body the gateway would not read (too large) or could not (bad JSON), for a unary call: 413 / 400. */
export function sendBodyError(dialect: GatewayDialect, request: IncomingMessage, response: ServerResponse, error: BodyError): void {
  if (error.kind === 'too-large') {
    drainAfterAnswer(request, response);
    sendErrorBody(dialect, request, response, 413, status.RESOURCE_EXHAUSTED, `etcd-cache-proxy: request body larger than ${error.limit} bytes`);
    return;
  }
  sendErrorBody(dialect, request, response, 400, status.INVALID_ARGUMENT, error.message);
}

/** How long a client refused mid-body may go on sending before its connection is cut. */
const DRAIN_MS = 2_000;

/**
 * Closing a socket while the client still sends makes the kernel answer
 * with a reset, which can discard the answer before the client has read it.
 * So the rest of the body is read and dropped (Node's server does that for
 * a request nobody reads), and only a client that keeps sending long after
 * its answer loses the connection.
 */
function drainAfterAnswer(request: IncomingMessage, response: ServerResponse): void {
  const socket = response.socket;
  if (socket === null || request.complete) return;
  request.resume();
  response.once('finish', () => {
    const timer = setTimeout(() => socket.destroy(), DRAIN_MS);
    timer.unref();
    const done = (): void => clearTimeout(timer);
    request.once('end', done);
    socket.once('close', done);
  });
}

/** The call options a request's headers ask for, or null once an error answer has gone out for bad ones. */
export function callOptionsOrRefuse(ctx: GatewayContext, request: IncomingMessage, response: ServerResponse): CoreCallOptions | null {
  const dialect = ctx.dialect();
  const options = callOptionsFrom(request.headers, dialect);
  if (!('error' in options)) return options;
  // A trailers-only answer carries its content type among the trailers, which grpc-gateway passes on.
  const trailers = options.trailersOnly ? [['content-type', 'application/grpc'] as const] : [];
  sendErrorBody(dialect, request, response, httpStatusFor(options.code, options.error, ctx.errors, dialect), options.code, options.error, trailers);
  return null;
}

/**
 * The whole body as one protobuf request of the route, or null once the
 * answer for a body that is not one has gone out (or the client left).
 */
export async function readRequestMessage(ctx: GatewayContext, route: GatewayRoute, request: IncomingMessage, response: ServerResponse): Promise<Buffer | null> {
  const body = await readJsonBody(request);
  if (body.kind === 'aborted') return null;
  if (body.kind !== 'json') {
    sendBodyError(ctx.dialect(), request, response, body);
    return null;
  }
  const encoded = encodeRequest(route.request, body.value);
  if ('error' in encoded) {
    sendErrorBody(ctx.dialect(), request, response, 400, status.INVALID_ARGUMENT, encoded.error);
    return null;
  }
  return encoded.bytes;
}
