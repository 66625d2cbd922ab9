import type { IncomingHttpHeaders } from 'node:http';
import { status } from '@grpc/grpc-js';
import { goJsonString } from './proto-json';

/**
 * What etcd's JSON gateway writes by itself (errors, their HTTP statuses,
 * routing answers, /health) changed between etcd 3.4 and 3.5, with the
 * grpc-gateway version etcd is built with. The proxy answers as the etcd
 * behind it does, so a client sees one etcd whether or not the proxy is in
 * between. Measured against etcd 3.4.23 and 3.5.16 (Debian's builds).
 */
export interface GatewayDialect {
  readonly name: '3.4' | '3.5';
  /** The HTTP status for a gRPC code (the proxy's own write refusals aside). */
  httpStatus(code: status): number;
  /** The body of a unary error answer. */
  errorBody(code: status, message: string): string;
  /** Whether a unary error answer carries the call's trailers (as Grpc-Trailer-* HTTP trailers). */
  forwardsTrailers(requestHeaders: IncomingHttpHeaders): boolean;
  /** The answer to a path under /v3/ that names no call, or to a method other than POST. */
  routingError(kind: 'not-found' | 'method'): RoutingAnswer;
  /** What a bad first request of a streaming body gets: an error answer, or the call opened with no request sent. */
  readonly badFirstStreamRequest: 'error' | 'half-close';
  /**
   * When a stream's HTTP headers go out: as soon as the call's own do (3.4,
   * always with a JSON content type), or with its first answer (3.5: a
   * stream that ends without one has no content type).
   */
  readonly streamHeaders: 'at-once' | 'with-first-answer';
  /** The refusal of an Authorization header that gRPC metadata cannot carry (not printable ASCII). */
  readonly unprintableToken: 'invalidAuthToken' | 'authorizationNotPrintable';
  /** GET /health's body. */
  healthBody(healthy: boolean, reason: string | undefined): string;
}

export interface RoutingAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
  /** Go's http.Error also sets nosniff; grpc-gateway's JSON answers do not. */
  readonly noSniff: boolean;
}

/**
 * grpc-gateway's table of gRPC codes to HTTP statuses, as etcd 3.4.23
 * answers (FailedPrecondition is 412, Canceled 408).
 */
const STATUS_34: Readonly<Record<number, number>> = {
  [status.OK]: 200,
  [status.CANCELLED]: 408,
  [status.UNKNOWN]: 500,
  [status.INVALID_ARGUMENT]: 400,
  [status.DEADLINE_EXCEEDED]: 504,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.PERMISSION_DENIED]: 403,
  [status.UNAUTHENTICATED]: 401,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.FAILED_PRECONDITION]: 412,
  [status.ABORTED]: 409,
  [status.OUT_OF_RANGE]: 400,
  [status.UNIMPLEMENTED]: 501,
  [status.INTERNAL]: 500,
  [status.UNAVAILABLE]: 503,
  [status.DATA_LOSS]: 500,
};

/** The newer grpc-gateway's table, as etcd 3.5.16 answers: FailedPrecondition is 400, Canceled 499 (client closed request). */
const STATUS_35: Readonly<Record<number, number>> = { ...STATUS_34, [status.CANCELLED]: 499, [status.FAILED_PRECONDITION]: 400 };

const ETCD_34: GatewayDialect = {
  name: '3.4',
  httpStatus: (code) => STATUS_34[code] ?? 500,
  errorBody(code, message) {
    // jsonpb leaves zero values out, so an empty message leaves out both fields.
    const text = goJsonString(message);
    return message === '' ? `{"code":${code}}` : `{"error":${text},"message":${text},"code":${code}}`;
  },
  forwardsTrailers: () => true,
  routingError: (kind) =>
    kind === 'not-found'
      ? { status: 404, contentType: 'text/plain; charset=utf-8', body: 'Not Found\n', noSniff: true }
      : { status: 405, contentType: 'text/plain; charset=utf-8', body: 'Method Not Allowed\n', noSniff: true },
  badFirstStreamRequest: 'error',
  streamHeaders: 'at-once',
  unprintableToken: 'invalidAuthToken',
  healthBody: (healthy, reason) => JSON.stringify(healthy ? { health: 'true' } : { health: 'false', reason: reason ?? '' }),
};

const ETCD_35: GatewayDialect = {
  name: '3.5',
  httpStatus: (code) => STATUS_35[code] ?? 500,
  // A google.rpc.Status: code, then message (left out when empty), no details.
  errorBody: (code, message) => (message === '' ? `{"code":${code}}` : `{"code":${code},"message":${goJsonString(message)}}`),
  // Trailers go only to a client that said it takes them (TE: trailers).
  forwardsTrailers: (headers) => [headers.te ?? ''].flat().join(',').split(',').some((part) => part.trim().toLowerCase() === 'trailers'),
  routingError: (kind) =>
    kind === 'not-found'
      ? { status: 404, contentType: 'application/json', body: `{"code":${status.NOT_FOUND},"message":"Not Found"}`, noSniff: false }
      : { status: 501, contentType: 'application/json', body: `{"code":${status.UNIMPLEMENTED},"message":"Method Not Allowed"}`, noSniff: false },
  // The request side closes on the bad request; the call stays open for its answers.
  badFirstStreamRequest: 'half-close',
  streamHeaders: 'with-first-answer',
  unprintableToken: 'authorizationNotPrintable',
  healthBody: (healthy, reason) => JSON.stringify({ health: healthy ? 'true' : 'false', reason: healthy ? '' : (reason ?? '') }),
};

/**
 * The dialect of the etcd whose version Status reported; etcd 3.4's when
 * not known yet (the API level the proxy serves before it has heard one).
 */
export function dialectFor(version: string | null): GatewayDialect {
  const match = /^(\d+)\.(\d+)\./.exec(version ?? '');
  if (match === null) return ETCD_34;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major > 3 || (major === 3 && minor >= 5) ? ETCD_35 : ETCD_34;
}
