import type { IncomingHttpHeaders } from 'node:http';
import { Metadata } from '@grpc/grpc-js';
import type { KeyRangeAsked, ReadDecision } from '../auth/directory';
import { ETCD_ERRORS, type EtcdErrorName } from '../etcd/errors';
import type { GrayscaleReport } from '../grayscale/grayscale-report';
import { prefixEnd } from '../etcd/key-ranges';
import { errorBody } from './http-errors';

/** What GET /grayscale is answered from. */
export interface GrayscaleAccess {
  /** This machine's grayscale identity and every key it withholds (grayscale/grayscale-report.ts). */
  report(): GrayscaleReport;
  /** Auth is on upstream: the report names keys under prefixes etcd may let only some users read. */
  authEnabled(): boolean;
  /** Decides a read of `ranges` by the caller's token as etcd's auth store would (auth/directory.ts). */
  decide(metadata: Metadata, ranges: readonly KeyRangeAsked[]): Promise<ReadDecision>;
}

export interface GrayscaleAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * The HTTP status of each refusal. The body is etcd's JSON error with etcd's
 * own code and message; the status says what the caller lacks: 401 when it
 * showed no identity etcd takes (no token, or one etcd would call invalid),
 * 403 when the identity may not read every grayscale prefix, or when the
 * proxy cannot tell whose token it is (a login it did not see): it fails
 * closed rather than name withheld keys to a stranger.
 */
const REFUSAL_STATUS: Readonly<Partial<Record<EtcdErrorName, number>>> = {
  userEmpty: 401,
  invalidAuthToken: 401,
  permissionDenied: 403,
  grayscaleUnknownToken: 403,
};

/** Each grayscale prefix as the key range a read of everything under it asks for. */
function prefixRanges(prefixes: readonly string[]): KeyRangeAsked[] {
  return prefixes.map((prefix) => {
    const key = Buffer.from(prefix);
    return { key, rangeEnd: prefixEnd(key) ?? Buffer.from([0]) };
  });
}

/**
 * GET /grayscale names keys and the versions this machine withholds, which
 * may sit under prefixes etcd lets only some users read. With auth on
 * upstream it answers only a caller whose token (`Authorization`, as etcd's
 * gateway reads it) belongs to a user etcd would let read every grayscale
 * prefix whole; with auth off, anyone, as etcd would let anyone read them.
 */
export async function answerGrayscale(access: GrayscaleAccess, headers: IncomingHttpHeaders): Promise<GrayscaleAnswer> {
  const report = access.report();
  if (!access.authEnabled()) return { status: 200, body: JSON.stringify(report) };
  const metadata = new Metadata();
  const token = headers.authorization;
  // gRPC metadata holds printable ASCII only; no token etcd issues is anything else.
  if (token !== undefined && token !== '' && /^[\x20-\x7e]*$/.test(token)) metadata.set('token', token);
  const decision = await access.decide(metadata, prefixRanges(report.prefixes));
  if (decision.kind === 'permit') return { status: 200, body: JSON.stringify(report) };
  const error: EtcdErrorName = decision.kind === 'forward' ? 'grayscaleUnknownToken' : decision.error;
  const { code, details } = ETCD_ERRORS[error];
  return { status: REFUSAL_STATUS[error] ?? 403, body: errorBody(code, details) };
}
