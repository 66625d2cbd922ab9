import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import { etcdMethod } from '../etcd/proto';

const keepAliveMethod = etcdMethod('etcdserverpb.Lease', 'LeaseKeepAlive');

/** "/etcdserverpb.Lease/LeaseKeepAlive", the path the shared upstream stream is opened on. */
export const KEEPALIVE_PATH = keepAliveMethod.path;

/** What etcd ends a keep-alive stream with when a renewal waited its request timeout for a leader. */

/** etcd's answer to bytes that are no LeaseKeepAliveRequest (grpc-go's unmarshal error, without its parser detail). */
const UNMARSHAL_ERROR = 'grpc: failed to unmarshal the received message';

/** The lease a keep-alive message names, or null for bytes that are no such message. */
export type LeaseIdReader = (message: Buffer) => string | null;

function leaseIdReader(decode: (message: Buffer) => object): LeaseIdReader {
  return (message) => {
    try {
      // proto3 leaves a zero ID off the wire; etcd reads it as lease 0.
      return (decode(message) as { ID?: string }).ID ?? '0';
    } catch {
      return null;
    }
  };
}

/** The lease a downstream LeaseKeepAliveRequest asks to renew. */
export const requestLeaseId: LeaseIdReader = leaseIdReader(keepAliveMethod.requestDeserialize);

/** The lease an upstream LeaseKeepAliveResponse answers for. */
export const answerLeaseId: LeaseIdReader = leaseIdReader(keepAliveMethod.responseDeserialize);

export function noLeaderStatus(): StatusObject {
  return { ...ETCD_ERRORS.noLeader, metadata: new Metadata() };
}

export function okStatus(): StatusObject {
  return { code: status.OK, details: 'OK', metadata: new Metadata() };
}

export function unmarshalStatus(): StatusObject {
  return { code: status.INTERNAL, details: UNMARSHAL_ERROR, metadata: new Metadata() };
}

/**
 * The shared stream asks etcd to refuse it while its member has no leader: a
 * renewal there would only wait out etcd's request timeout, and the refusal
 * sends the retry to another member at once.
 */
export function requireLeaderMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set('hasleader', 'true');
  return metadata;
}
