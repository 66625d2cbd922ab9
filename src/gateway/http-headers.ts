import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { status, type Metadata } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import type { GatewayDialect } from './gateway-dialect';
import { STALE_HEADER } from '../etcd/metadata';
import { isReservedMetadataKey, metadataEntries, type CoreCallOptions } from './core-call';

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
/** Node's timers take at most 2^31-1 ms (~24.8 days); a longer deadline is as good as none. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/** Request headers refused before any call: the error, and whether etcd would have answered it as a call (trailers only). */
export interface HeaderRefusal {
  readonly error: string;
  readonly code: status;
  readonly trailersOnly: boolean;
}

/**
 * What grpc-gateway passes from the HTTP request to the gRPC call: the
 * Authorization header as the auth token, Grpc-Metadata-* headers as
 * metadata (Grpc-Metadata-Hasleader: true asks for etcd's require-leader
 * watch), and Grpc-Timeout as the call's deadline.
 */
export function callOptionsFrom(headers: IncomingHttpHeaders, dialect: GatewayDialect): CoreCallOptions | HeaderRefusal {
  const metadata: [string, string][] = [];
  // etcd reads the token from `token` (what clientv3 sends) before `authorization` (what grpc-gateway
  // passes on); `token` keeps HTTP clients on the same path through the proxy as gRPC ones.
  const authorization = headers.authorization;
  if (authorization !== undefined && authorization !== '') {
    // gRPC metadata holds printable ASCII only; no token etcd issues is anything else, and grpc-js
    // would drop it silently, so the call would go out without the token the client meant to send.
    if (!PRINTABLE_ASCII.test(authorization)) {
      const refusal = ETCD_ERRORS[dialect.unprintableToken];
      // etcd 3.4 refuses the token itself, in a trailers-only answer; etcd 3.5's gateway before the call.
      return { error: refusal.details, code: refusal.code, trailersOnly: dialect.unprintableToken === 'invalidAuthToken' };
    }
    metadata.push(['token', authorization]);
  }
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(METADATA_HEADER_PREFIX) || value === undefined) continue;
    const key = name.slice(METADATA_HEADER_PREFIX.length);
    if (key === '' || isReservedMetadataKey(key) || !/^[0-9a-z_.-]+$/.test(key)) continue;
    for (const item of Array.isArray(value) ? value : [value]) if (key.endsWith('-bin') || PRINTABLE_ASCII.test(item)) metadata.push([key, item]);
  }
  const timeoutHeader = headers['grpc-timeout'];
  const timeoutMs = timeoutHeader === undefined || timeoutHeader === '' ? null : grpcTimeoutMs(String(timeoutHeader));
  if (timeoutMs instanceof Error) return { error: timeoutMs.message, code: status.INVALID_ARGUMENT, trailersOnly: false };
  return { metadata, timeoutMs };
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Go's reading of Grpc-Timeout: an integer (an int64) and one unit letter.
 * Zero means no deadline, as in grpc-gateway; a negative one has passed
 * already, and the call fails with DEADLINE_EXCEEDED, as in Go.
 */
function grpcTimeoutMs(value: string): number | null | Error {
  const invalid = new Error(`invalid grpc-timeout: ${value}`);
  const unit = TIMEOUT_UNIT_MS[value.slice(-1)];
  const amount = value.slice(0, -1);
  if (value.length < 2 || unit === undefined || !/^[+-]?\d+$/.test(amount) || BigInt(amount) > INT64_MAX || BigInt(amount) < -INT64_MAX - 1n) return invalid;
  const ms = Number(amount) * unit;
  if (ms === 0) return null;
  return ms < 0 ? -1 : Math.min(ms, MAX_TIMER_MS);
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
export function responseHeadersFrom(metadata: Metadata | null): OutgoingHttpHeaders {
  // etcd's own gRPC server sends content-type application/grpc, which grpc-gateway passes on as metadata.
  const headers: OutgoingHttpHeaders = { 'Grpc-Metadata-Content-Type': 'application/grpc' };
  const grouped = new Map<string, string[]>();
  for (const [key, value] of metadataEntries(metadata ?? undefined)) grouped.set(key, [...(grouped.get(key) ?? []), value]);
  for (const [key, values] of grouped) headers[`Grpc-Metadata-${canonicalHeaderName(key)}`] = values.length === 1 ? values[0] : values;
  const stale = grouped.get(STALE_HEADER);
  if (stale !== undefined) headers[STALE_HEADER] = stale.length === 1 ? stale[0] : stale;
  return headers;
}
