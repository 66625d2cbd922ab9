import { status } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { goJsonString } from './proto-json';

/**
 * The HTTP status etcd 3.4's gateway (grpc-gateway) answers for each gRPC
 * code, as measured against etcd 3.4.23 (FailedPrecondition is 412 there,
 * ResourceExhausted 429).
 */
const HTTP_STATUS_BY_CODE: Readonly<Record<number, number>> = {
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

export function httpStatusFor(code: status, details: string, policy: HttpErrorPolicy): number {
  if (isWriteRefusal(code, details)) return policy.writeRejectStatus;
  return HTTP_STATUS_BY_CODE[code] ?? 500;
}

/** etcd 3.4's error body for a unary call: {"error":..., "message":..., "code":...}. */
export function errorBody(code: status, message: string): string {
  // jsonpb leaves zero values out, so an empty message leaves out both fields.
  const text = goJsonString(message);
  return message === '' ? `{"code":${code}}` : `{"error":${text},"message":${text},"code":${code}}`;
}

/** The error object grpc-gateway writes into a response stream (no newline after it). */
export function streamErrorChunk(code: status, message: string, httpStatus: number): string {
  const text = message === '' ? '' : `"message":${goJsonString(message)},`;
  return `{"error":{"grpc_code":${code},"http_code":${httpStatus},${text}"http_status":${goJsonString(statusText(httpStatus))}}}`;
}
