import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { status } from '@grpc/grpc-js';
import { callOptionsOrRefuse, readRequestMessage, sendComplete, sendErrorBody, type GatewayContext } from './gateway-context';
import type { CallStatus, GrpcLoopback, LoopbackCallOptions } from './grpc-loopback';
import { httpStatusFor } from './http-errors';
import { responseHeadersFrom } from './http-headers';
import { responseJson } from './proto-json';
import type { GatewayRoute } from './routes';

/** What one unary call through the loopback brought back. */
interface UnaryOutcome {
  readonly headers: IncomingHttpHeaders | null;
  readonly message: Buffer | null;
  readonly status: CallStatus;
}

/**
 * One unary JSON call, as etcd's gateway serves it: request headers, then
 * the body as the request message, then the gRPC answer as JSON or etcd's
 * JSON error body.
 */
export async function serveUnary(ctx: GatewayContext, route: GatewayRoute, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const options = callOptionsOrRefuse(ctx, request, response);
  if (options === null) return;
  const message = await readRequestMessage(route, request, response);
  if (message === null) return;
  const outcome = await callUnary(ctx.loopback, route.grpcPath, message, options, response);
  if (response.destroyed) return;
  const result = outcome.status;
  if (result.code === status.OK && outcome.message !== null) {
    sendComplete(response, 200, { 'Content-Type': 'application/json', ...responseHeadersFrom(outcome.headers ?? {}) }, responseJson(route.response, outcome.message));
    return;
  }
  const code = result.code === status.OK ? status.INTERNAL : result.code;
  const details = result.code === status.OK ? 'etcd-cache-proxy: no answer from the gRPC server' : result.details;
  if (outcome.headers !== null) for (const [name, value] of Object.entries(responseHeadersFrom(outcome.headers))) if (value !== undefined) response.setHeader(name, value);
  // A trailers-only answer carries its content-type among the trailers, which grpc-gateway passes on.
  const trailers = result.trailersOnly ? [['content-type', 'application/grpc'] as const, ...result.trailers] : result.trailers;
  sendErrorBody(response, httpStatusFor(code, details, ctx.errors), code, details, trailers);
}

/** One request message out, the answer back; the call is cancelled if the HTTP client goes away first. */
function callUnary(loopback: GrpcLoopback, path: string, message: Buffer, options: LoopbackCallOptions, response: ServerResponse): Promise<UnaryOutcome> {
  return new Promise((resolve) => {
    const call = loopback.call(path, options);
    let headers: IncomingHttpHeaders | null = null;
    let answer: Buffer | null = null;
    const onClose = (): void => call.cancel();
    response.once('close', onClose);
    call.on('headers', (received) => (headers = received));
    call.on('message', (received) => (answer ??= received));
    call.on('status', (result) => {
      response.off('close', onClose);
      resolve({ headers, message: answer, status: result });
    });
    call.write(message);
    call.end();
  });
}
