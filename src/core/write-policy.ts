import type { ProxyMode } from '../settings/types';
import type { Metrics } from '../metrics';
import type { Mirror } from '../mirror/mirror';
import type { RangeQueries } from '../mirror/mirror-scope';
import { toRevision, type WireHeader } from '../etcd/wire';
import type { Liveness } from '../upstream/liveness';
import { ProxyError } from '../etcd/errors';
import { etcdMethod } from '../etcd/proto';

/** How long a forwarded write waits for the mirror to catch up before answering anyway. */
export const READ_YOUR_WRITES_TIMEOUT_MS = 1_000;

export interface WritePolicy {
  /** The error a write gets instead of being forwarded, or null to forward it. */
  admit(): ProxyError | null;
  /** After a KV write succeeded: wait (bounded) until the mirror holds its revision, if the mirror will ever see it. */
  awaitMirror(method: string, response: Buffer, request: Buffer): Promise<void>;
}

/**
 * Writes go upstream only: in read-only mode they are refused with
 * UNIMPLEMENTED, and while the upstream is lost with UNAVAILABLE at once,
 * never queued. A write that went through returns once the mirror has its
 * revision, so the client's next read through this proxy sees it.
 */
export function createWritePolicy(deps: {
  readonly mode: () => ProxyMode;
  readonly liveness: Liveness;
  readonly mirror: Mirror;
  readonly ranges: RangeQueries;
  readonly metrics: Metrics;
}): WritePolicy {
  return {
    admit() {
      if (deps.mode() === 'readonly') {
        deps.metrics.writesRejected.inc({ reason: 'readonly' });
        return new ProxyError('readOnly');
      }
      if (deps.liveness.isLost()) {
        deps.metrics.writesRejected.inc({ reason: 'upstream_lost' });
        return new ProxyError('upstreamLost');
      }
      return null;
    },
    async awaitMirror(method, response, request) {
      const definition = etcdMethod('etcdserverpb.KV', method);
      // A read-only Txn writes nothing, and a write the mirror's watch cannot see would wait out the whole bound for nothing.
      const written = writtenRanges(definition.requestDeserialize(request) as WireWrite);
      if (written.length === 0 || (!deps.ranges.whole && !written.some((r) => deps.ranges.touchesWatch(r.key, r.rangeEnd)))) return;
      const decoded = definition.responseDeserialize(response) as { header?: WireHeader };
      // etcd took the write, so it answers: a mirror still waiting out its reconnect delay goes now.
      deps.mirror.hurry();
      await deps.mirror.waitForRevision(toRevision(decoded.header?.revision), READ_YOUR_WRITES_TIMEOUT_MS);
    },
  };
}

/** The fields of a Put, DeleteRange or Txn request that name the keys it may write. */
interface WireWrite {
  key?: Buffer;
  range_end?: Buffer;
  success?: WireOp[];
  failure?: WireOp[];
}
interface WireOp {
  request_put?: WireWrite;
  request_delete_range?: WireWrite;
  request_txn?: WireWrite;
}

/** Every (key, range_end) a write request may change, through both branches of (nested) Txns. */
function writtenRanges(request: WireWrite): { key: Buffer; rangeEnd: Buffer }[] {
  if (request.success === undefined && request.failure === undefined && request.key !== undefined) {
    return [{ key: request.key, rangeEnd: request.range_end ?? Buffer.alloc(0) }];
  }
  return [...(request.success ?? []), ...(request.failure ?? [])].flatMap((op) => {
    const inner = op.request_put ?? op.request_delete_range ?? op.request_txn;
    return inner === undefined ? [] : writtenRanges(inner);
  });
}
