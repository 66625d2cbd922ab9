import { status } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { dialectFor, type GatewayDialect } from './gateway-dialect';
import { goJsonString } from './proto-json';

/** Go's http.StatusText for the statuses the gateway answers with. */
const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Request Entity Too Large',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function statusText(httpStatus: number): string {
  return STATUS_TEXT[httpStatus] ?? '';
}

/** What a gRPC status becomes on the HTTP side. */
export interface HttpErrorPolicy {
  /**
   * The HTTP status of a write the proxy refused (read-only mode, upstream
   * lost): 501 by default, as etcd's v2 proxy answered (docs/design.md, "Writes").
   */
  readonly writeRejectStatus: number;
}

/**
 * The proxy's own write refusals are told apart by their message, which
 * comes from the one table of etcd-visible errors; an UNAVAILABLE from etcd
 * itself keeps grpc-gateway's 503.
 */
export function isWriteRefusal(code: status, details: string): boolean {
  return (
    (code === ETCD_ERRORS.readOnly.code && details === ETCD_ERRORS.readOnly.details) ||
    (code === ETCD_ERRORS.upstreamLost.code && details === ETCD_ERRORS.upstreamLost.details)
  );
}

export function httpStatusFor(code: status, details: string, policy: HttpErrorPolicy, dialect: GatewayDialect): number {
  if (isWriteRefusal(code, details)) return policy.writeRejectStatus;
  return dialect.httpStatus(code);
}

/** etcd 3.4's error body for a unary call: {"error":..., "message":..., "code":...} (the proxy's own /grayscale answers so). */
export function errorBody(code: status, message: string): string {
  return dialectFor(null).errorBody(code, message);
}

/** The error object grpc-gateway writes into a response stream. */
export function streamErrorChunk(code: status, message: string, httpStatus: number, dialect: GatewayDialect): string {
  const text = message === '' ? '' : `"message":${goJsonString(message)}`;
  // etcd 3.5's gateway writes the google.rpc.Status, then its delimiter (a newline); not measured, as
  // etcd ends a stream with an error only in states a test cannot make on demand (a lost leader).
  if (dialect.name === '3.5') return `{"error":{"code":${code}${text === '' ? '' : `,${text}`}}}\n`;
  return `{"error":{"grpc_code":${code},"http_code":${httpStatus},${text === '' ? '' : `${text},`}"http_status":${goJsonString(statusText(httpStatus))}}}`;
}
