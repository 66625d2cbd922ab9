import { Metadata } from '@grpc/grpc-js';
import { PROXY_HEADER } from '../etcd/metadata';

/**
 * What an upstream member is, as its own answers say: an etcd member, or an
 * etcd-cache-proxy (a tier between this proxy and etcd), which marks every
 * answer with its header. Unknown until it has answered.
 */
export type UpstreamKind = 'etcd' | 'proxy' | 'unknown';

/** What the response headers of an answer say the member is. */
export function kindOfHeaders(headers: Metadata): Exclude<UpstreamKind, 'unknown'> {
  return headers.get(PROXY_HEADER).length > 0 ? 'proxy' : 'etcd';
}

/**
 * What a failed call says of the member: a proxy when its status carries the
 * header (a trailers-only answer of a proxy); otherwise nothing, since an
 * error may come from this side (no connection) and say nothing of the member.
 */
export function kindOfError(error: unknown): 'proxy' | 'unknown' {
  const metadata: unknown = typeof error === 'object' && error !== null ? (error as { metadata?: unknown }).metadata : undefined;
  return metadata instanceof Metadata && metadata.get(PROXY_HEADER).length > 0 ? 'proxy' : 'unknown';
}
