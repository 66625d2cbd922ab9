import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';

/**
 * Errors the proxy raises itself, with the exact gRPC code and message a
 * client would get from etcd for the same condition, or, where etcd has no
 * such condition, a message that names the proxy. Errors from the upstream
 * never pass through this table: they are relayed untouched.
 */
export const ETCD_ERRORS = {
  compacted: { code: status.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' },
  futureRevision: { code: status.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' },
  noLeader: { code: status.UNAVAILABLE, details: 'etcdserver: no leader' },
  emptyKey: { code: status.INVALID_ARGUMENT, details: 'etcdserver: key is not provided' },
  invalidSortOption: { code: status.INVALID_ARGUMENT, details: 'etcdserver: invalid sort option' },
  tooManyOps: { code: status.INVALID_ARGUMENT, details: 'etcdserver: too many operations in txn request' },
  invalidAuthToken: { code: status.UNAUTHENTICATED, details: 'etcdserver: invalid auth token' },
  /** etcd 3.5's JSON gateway, for an Authorization header gRPC metadata cannot carry. */
  authorizationNotPrintable: { code: status.INTERNAL, details: 'header key "authorization" contains value with non-printable ASCII characters' },
  userEmpty: { code: status.INVALID_ARGUMENT, details: 'etcdserver: user name is empty' },
  permissionDenied: { code: status.PERMISSION_DENIED, details: 'etcdserver: permission denied' },
  authFailed: { code: status.INVALID_ARGUMENT, details: 'etcdserver: authentication failed, invalid user ID or password' },
  authOldRevision: { code: status.INVALID_ARGUMENT, details: 'etcdserver: revision of auth store is old' },
  unsupported: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: upstream cluster unreachable and the mirror cannot answer this request' },
  readOnly: { code: status.UNIMPLEMENTED, details: 'etcd-cache-proxy: read-only proxy rejects writes' },
  upstreamLost: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: upstream cluster unreachable, writes rejected' },
  staleDenied: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: upstream cluster unreachable, stale reads denied (--stale-reads=deny)' },
  grayscaleUnsynced: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: the mirror has not synced yet, and keys under --grayscale-prefix are answered only from it' },
  neverSynced: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: upstream cluster unreachable and the mirror has never synced' },
  shuttingDown: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: shutting down' },
  noUpstream: { code: status.UNAVAILABLE, details: 'etcd-cache-proxy: no upstream member reachable' },
  grayscaleUnknownToken: { code: status.PERMISSION_DENIED, details: 'etcd-cache-proxy: GET /grayscale needs a token from a login through this proxy' },
  internal: { code: status.INTERNAL, details: 'etcd-cache-proxy: internal error' },
} as const satisfies Record<string, { code: status; details: string }>;

export type EtcdErrorName = keyof typeof ETCD_ERRORS;

/** An error the proxy made itself, carrying the status a client should see. */
export class ProxyError extends Error {
  readonly code: status;
  readonly details: string;

  constructor(name: EtcdErrorName, options?: { cause?: unknown }) {
    const { code, details } = ETCD_ERRORS[name];
    super(details, options);
    this.name = 'ProxyError';
    this.code = code;
    this.details = details;
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === 'number' &&
    typeof (error as Partial<ServiceError>).details === 'string'
  );
}

/**
 * The one boundary where anything thrown becomes a gRPC status: upstream
 * statuses unchanged (code, message and trailers), our own from the table,
 * anything else INTERNAL without leaking internals to the client.
 */
export function toStatus(error: unknown): StatusObject {
  if (error instanceof ProxyError) return { code: error.code, details: error.details, metadata: new Metadata() };
  if (isServiceError(error)) {
    return { code: error.code, details: error.details, metadata: error.metadata ?? new Metadata() };
  }
  return { ...ETCD_ERRORS.internal, metadata: new Metadata() };
}

/** "NOT_FOUND" for status.NOT_FOUND: the label metrics use. */
export function statusName(code: status): string {
  return status[code] ?? String(code);
}

/** grpc-go's names of the codes etcd puts in a watch's cancel_reason. */
const GO_CODE_NAMES: Partial<Record<status, string>> = {
  [status.INVALID_ARGUMENT]: 'InvalidArgument',
  [status.PERMISSION_DENIED]: 'PermissionDenied',
  [status.UNAUTHENTICATED]: 'Unauthenticated',
};

/**
 * How etcd words an error in a watch's cancel_reason: the text of grpc-go's
 * status error ("rpc error: code = PermissionDenied desc = etcdserver:
 * permission denied"), not the bare message.
 */
export function cancelReasonOf(name: EtcdErrorName): string {
  const { code, details } = ETCD_ERRORS[name];
  return `rpc error: code = ${GO_CODE_NAMES[code] ?? statusName(code)} desc = ${details}`;
}

/** The message inside a cancel_reason in grpc-go's status form, or the reason as it is. */
export function cancelReasonMessage(reason: string): string {
  const match = /^rpc error: code = \w+ desc = (.*)$/s.exec(reason);
  return match?.[1] ?? reason;
}
