import type { KeyRangeAsked } from '../auth/directory';
import type { EtcdErrorName } from '../etcd/errors';
import type { AnyMethodDefinition } from '../etcd/proto';
import type { StoreMeta } from '../store/meta';
import { RequestMemo } from './request-memo';
import type { Validity } from './response-cache';

/** What one kind of read request needs to be served from the mirror. */
export interface ReadSpec<Req> {
  /** False: not a read at all (a Txn with writes); forwarded as it is. */
  isRead(request: Req): boolean;
  /** True when every key the read may name is mirrored. */
  covered(request: Req): boolean;
  /** True when the read may name a key under a grayscale prefix. */
  grayscale(request: Req): boolean;
  /** What etcd would refuse, or what the mirror cannot answer itself. */
  refusal(request: Req): EtcdErrorName | null;
  /** A revision other than 0: a read of the keyspace as it was then. */
  revision(request: Req): number;
  /** Every key range etcd checks read permission on, or null when the mirror leaves the decision to etcd. */
  permissionRanges(request: Req): KeyRangeAsked[] | null;
  serializable(request: Req): boolean;
  /**
   * The encoded response at the mirror's current content (`meta`): without
   * its header field when the validity is `spans` (the caller puts the
   * current header in front), whole when it is `revision-exact`.
   */
  answer(request: Req, meta: StoreMeta): Buffer;
  /** How long the answer stays true (see ResponseCache). */
  validity(request: Req): Validity;
}

/** Requests as decoded, by their bytes: gateways send the same few reads over and over. */
export function decodedReads<Req>(method: AnyMethodDefinition, spec: ReadSpec<Req>): RequestMemo<Req> {
  return new RequestMemo<Req>((bytes, id) => {
    const request = method.requestDeserialize(bytes) as Req;
    const read = spec.isRead(request);
    return {
      request,
      id,
      read,
      refusal: read ? spec.refusal(request) : null,
      revision: read ? spec.revision(request) : 0,
      serializable: read && spec.serializable(request),
    };
  });
}
