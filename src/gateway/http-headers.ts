import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { STALE_HEADER } from '../etcd/metadata';
import { isReservedMetadataKey, type LoopbackCallOptions } from './grpc-loopback';

/** etcd adds these to every answer on its client port (its default --cors is "*"). */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Methods': 'POST, GET, OPTIONS, PUT, DELETE',
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'accept, content-type, authorization',
};

export function setCorsHeaders(response: ServerResponse): void {
  for (const [name, value] of Object.entries(CORS_HEADERS)) response.setHeader(name, value);
}

const METADATA_HEADER_PREFIX = 'grpc-metadata-';
const GO_MAX_TIMEOUT_VALUE = 99_999_999;
const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * What grpc-gateway passes from the HTTP request to the gRPC call: the
 * Authorization header as the auth token, Grpc-Metadata-* headers as
 * metadata (Grpc-Metadata-Hasleader: true asks for etcd's require-leader
 * watch), and Grpc-Timeout as the call's deadline.
 */
export function callOptionsFrom(headers: IncomingHttpHeaders): LoopbackCallOptions | { error: string; code: status } {
  const metadata: [string, string][] = [];
  // etcd reads the token from `token` (what clientv3 sends) before `authorization` (what grpc-gateway
  // passes on); `token` keeps HTTP clients on the same path through the proxy as gRPC ones.
  const authorization = headers.authorization;
  if (authorization !== undefined && authorization !== '') {
    // gRPC metadata holds printable ASCII only; no token etcd issues is anything else, and grpc-js
    // would drop it silently, so the call would go out without the token the client meant to send.
    if (!PRINTABLE_ASCII.test(authorization)) return { error: ETCD_ERRORS.invalidAuthToken.details, code: ETCD_ERRORS.invalidAuthToken.code };
    metadata.push(['token', authorization]);
  }
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(METADATA_HEADER_PREFIX) || value === undefined) continue;
    const key = name.slice(METADATA_HEADER_PREFIX.length);
    if (key === '' || isReservedMetadataKey(key) || !/^[0-9a-z_.-]+$/.test(key)) continue;
    for (const item of Array.isArray(value) ? value : [value]) if (key.endsWith('-bin') || PRINTABLE_ASCII.test(item)) metadata.push([key, item]);
  }
  const timeoutHeader = headers['grpc-timeout'];
  const timeout = timeoutHeader === undefined || timeoutHeader === '' ? null : grpcTimeout(String(timeoutHeader));
  if (timeout instanceof Error) return { error: timeout.message, code: status.INVALID_ARGUMENT };
  return { metadata, timeout };
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Go's reading of Grpc-Timeout (an integer and one unit letter), re-spelled
 * for grpc-js, whose header takes at most eight digits. Zero means no
 * deadline there, as in grpc-gateway.
 */
function grpcTimeout(value: string): string | null | Error {
  const invalid = new Error(`invalid grpc-timeout: ${value}`);
  const unit = TIMEOUT_UNIT_MS[value.slice(-1)];
  const amount = value.slice(0, -1);
  // Go parses the amount as an int64.
  if (value.length < 2 || unit === undefined || !/^[+-]?\d+$/.test(amount) || BigInt(amount) > INT64_MAX || BigInt(amount) < -INT64_MAX - 1n) return invalid;
  const ms = Number(amount) * unit;
  if (ms === 0) return null;
  if (ms < 0) return '1n'; // already past: the call fails with DEADLINE_EXCEEDED, as in Go
  return ms < GO_MAX_TIMEOUT_VALUE ? `${Math.ceil(ms)}m` : `${Math.min(Math.ceil(ms / 1000), GO_MAX_TIMEOUT_VALUE)}S`;
}

/** "x-etcd-cache-proxy-stale" → "X-Etcd-Cache-Proxy-Stale", as Go spells header names. */
export function canonicalHeaderName(key: string): string {
  return key.replace(/(^|-)([a-z])/g, (_match, dash: string, letter: string) => dash + letter.toUpperCase());
}

/**
 * The response headers grpc-gateway derives from the gRPC answer's initial
 * metadata: each key as Grpc-Metadata-<Key>. The stale marker also goes out
 * under its own name, as the contract promises HTTP clients.
 */
export function responseHeadersFrom(grpcHeaders: IncomingHttpHeaders): OutgoingHttpHeaders {
  // etcd's own gRPC server sends content-type application/grpc, which grpc-gateway passes on as metadata.
  const headers: OutgoingHttpHeaders = { 'Grpc-Metadata-Content-Type': 'application/grpc' };
  for (const [key, value] of Object.entries(grpcHeaders)) {
    if (isReservedMetadataKey(key) || value === undefined) continue;
    headers[`Grpc-Metadata-${canonicalHeaderName(key)}`] = value;
  }
  const stale = grpcHeaders[STALE_HEADER];
  if (stale !== undefined) headers[STALE_HEADER] = stale;
  return headers;
}
