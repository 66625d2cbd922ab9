import type { IncomingMessage, ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import { callOptionsOrRefuse, readRequestMessage, sendComplete, sendErrorBody, type GatewayContext } from './gateway-context';
import { callUnary } from './core-call';
import { httpStatusFor } from './http-errors';
import { responseHeadersFrom } from './http-headers';
import { responseJson } from './proto-json';
import type { GatewayRoute } from './routes';

/**
 * One unary JSON call, as etcd's gateway serves it: request headers, then
 * the body as the request message, then the core's answer as JSON or etcd's
 * JSON error body.
 */
export async function serveUnary(ctx: GatewayContext, route: GatewayRoute, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const method = ctx.core.method(route.grpcPath);
  if (method?.kind !== 'unary') throw new Error(`etcd-cache-proxy: ${route.grpcPath} is not a unary method of the core`);
  const options = callOptionsOrRefuse(ctx, request, response);
  if (options === null) return;
  const message = await readRequestMessage(ctx, route, request, response);
  if (message === null) return;
  const address = request.socket.remoteAddress;
  const peer = address === undefined ? undefined : address.includes(':') ? `[${address}]:${request.socket.remotePort ?? 0}` : `${address}:${request.socket.remotePort ?? 0}`;
  const call = callUnary(method.handler, message, { ...options, peer });
  const onClose = (): void => call.abandon();
  response.once('close', onClose);
  const outcome = await call.outcome;
  response.off('close', onClose);
  if (response.destroyed) return;
  const result = outcome.status;
  if (result.code === status.OK && outcome.message !== null) {
    const answer = outcome.message;
    const json = ctx.core.answerJson(answer, () => responseJson(route.response, answer));
    sendComplete(response, 200, { 'Content-Type': 'application/json', ...responseHeadersFrom(outcome.headers) }, json);
    return;
  }
  if (outcome.headers !== null) for (const [name, value] of Object.entries(responseHeadersFrom(outcome.headers))) if (value !== undefined) response.setHeader(name, value);
  // A trailers-only answer carries its content-type among the trailers, which grpc-gateway passes on.
  const trailers = result.trailersOnly ? [['content-type', 'application/grpc'] as const, ...result.trailers] : result.trailers;
  const dialect = ctx.dialect();
  sendErrorBody(dialect, request, response, httpStatusFor(result.code, result.details, ctx.errors, dialect), result.code, result.details, trailers);
}
