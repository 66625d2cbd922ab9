import type { IncomingMessage, ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import type { DuplexHandler } from '../core/call';
import { JsonValueStream, type BodyError } from './body-reader';
import { GatewayStreamCall, type CallStatus, type CoreCallOptions } from './core-call';
import { callOptionsOrRefuse, readRequestMessage, sendBodyError, sendErrorBody, type GatewayContext } from './gateway-context';
import { httpStatusFor, streamErrorChunk } from './http-errors';
import { responseHeadersFrom } from './http-headers';
import { encodeRequest, responseJson } from './proto-json';
import type { JsonValue } from './go-json';
import type { GatewayRoute } from './routes';

/**
 * A streaming call (Watch, LeaseKeepAlive, Snapshot) as etcd's gateway
 * serves it: the response is chunked, one `{"result":...}` object and a
 * newline per answer, ending with an `{"error":...}` object when the call
 * fails. For Watch and LeaseKeepAlive the request body is itself a sequence
 * of JSON requests, each handed to the core as it arrives; the end of the
 * body half-closes the call (a watch stays open, a keep-alive stream ends
 * once it has answered).
 *
 * Unlike etcd's Go server, which answers an HTTP/1.1 request only after
 * reading its whole body, this one answers while the body still streams:
 * a client may send cancel and progress requests on an open watch.
 */
export function serveStream(ctx: GatewayContext, route: GatewayRoute, request: IncomingMessage, response: ServerResponse): void {
  const method = ctx.core.method(route.grpcPath);
  if (method === undefined || method.kind === 'unary') throw new Error(`etcd-cache-proxy: ${route.grpcPath} is not a streaming method of the core`);
  const options = callOptionsOrRefuse(ctx, request, response);
  if (options === null) return;
  if (method.kind === 'server-stream') {
    const handler = method.handler;
    readRequestMessage(ctx, route, request, response).then(
      (message) => {
        if (message !== null) handler(openCall(ctx, route, options, response, message));
      },
      (error: unknown) => {
        ctx.log.error({ err: error, path: route.path }, 'gateway stream failed');
        response.destroy();
      },
    );
    return;
  }
  relayRequests(ctx, route, method.handler, options, request, response);
}

/** Feeds the body's JSON requests into the call, opened with the first of them. */
function relayRequests(ctx: GatewayContext, route: GatewayRoute, handler: DuplexHandler, options: CoreCallOptions, request: IncomingMessage, response: ServerResponse): void {
  const body = new JsonValueStream();
  let call: GatewayStreamCall | null = null;
  let reading = true;
  const open = (): GatewayStreamCall => {
    if (call === null) {
      call = openCall(ctx, route, options, response);
      handler(call);
    }
    return call;
  };

  const stopReading = (): void => {
    reading = false;
    request.off('data', onData);
    request.resume(); // the rest of the body is read and dropped, as Go's gateway stops decoding
  };
  const failed = (error: BodyError): void => {
    stopReading();
    const dialect = ctx.dialect();
    if (call === null) {
      if (error.kind === 'too-large') {
        sendBodyError(dialect, request, response, error);
        return;
      }
      if (dialect.badFirstStreamRequest === 'error') {
        // etcd 3.4's gateway reports a bad first request as a plain error, with code Unknown (HTTP 500).
        sendErrorBody(dialect, request, response, 500, status.UNKNOWN, error.message);
        return;
      }
    }
    // A bad later request (any bad request, on etcd 3.5) ends the sending side only; answers keep coming, as with etcd.
    open().finishRequests();
  };
  const deliver = (values: readonly JsonValue[], error: BodyError | undefined): boolean => {
    for (const value of values) {
      const encoded = encodeRequest(route.request, value);
      if ('error' in encoded) {
        failed({ kind: 'invalid', message: encoded.error });
        return false;
      }
      open().push(encoded.bytes);
    }
    if (error !== undefined) {
      failed(error);
      return false;
    }
    return true;
  };
  const onData = (chunk: Buffer): void => {
    const { values, error } = body.push(chunk);
    deliver(values, error);
  };
  request.on('data', onData);
  request.on('end', () => {
    if (!reading) return;
    const { values, error } = body.end();
    if (deliver(values, error)) open().finishRequests();
  });
}

const RESULT_OPEN = Buffer.from('{"result":');
const RESULT_CLOSE = Buffer.from('}\n');

/** A call whose answers go to the HTTP response as they come. */
function openCall(ctx: GatewayContext, route: GatewayRoute, options: CoreCallOptions, response: ServerResponse, request?: Buffer): GatewayStreamCall {
  let started = false;
  let awaitingDrain = false;
  /** The call's own headers, kept for the first answer when the dialect sends them only then. */
  let callHeaders: Record<string, string | string[] | number> = {};
  const start = (httpStatus: number, withContentType = true): void => {
    started = true;
    response.writeHead(httpStatus, { ...(withContentType ? { 'Content-Type': 'application/json' } : {}), ...callHeaders });
    response.flushHeaders();
  };
  const call: GatewayStreamCall = new GatewayStreamCall(
    options,
    {
      headers(metadata) {
        const plain: Record<string, string | string[] | number> = {};
        for (const [name, value] of Object.entries(responseHeadersFrom(metadata))) if (value !== undefined) plain[name] = value;
        callHeaders = plain;
        if (ctx.dialect().streamHeaders === 'at-once') start(200);
      },
      message(bytes, done) {
        if (response.destroyed) return true;
        if (!started) start(200);
        let json: Buffer;
        try {
          json = responseJson(route.response, bytes);
        } catch (error) {
          ctx.log.error({ err: error, path: route.path }, 'gateway could not encode a stream answer');
          response.destroy();
          return true;
        }
        const flushed = response.write(Buffer.concat([RESULT_OPEN, json, RESULT_CLOSE]), done === undefined ? undefined : () => done());
        // A slow HTTP client holds the stream back (the watch hub then buffers, up to its bound).
        if (!flushed && !awaitingDrain) {
          awaitingDrain = true;
          response.once('drain', () => {
            awaitingDrain = false;
            call.emit('drain');
          });
        }
        return flushed;
      },
      status(result: CallStatus) {
        response.off('close', onClose);
        if (response.destroyed) return;
        const dialect = ctx.dialect();
        if (result.code === status.OK) {
          if (!started) start(200, dialect.streamHeaders === 'at-once');
          response.end();
          return;
        }
        const httpStatus = httpStatusFor(result.code, result.details, ctx.errors, dialect);
        if (!started) start(httpStatus);
        response.end(streamErrorChunk(result.code, result.details, httpStatus, dialect));
      },
    },
    request,
  );
  const onClose = (): void => call.cancel();
  response.once('close', onClose);
  return call;
}
