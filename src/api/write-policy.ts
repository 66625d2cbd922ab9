import type { ProxyMode } from '../config';
import type { Metrics } from '../metrics';
import type { Mirror } from '../mirror/mirror';
import { toRevision, type WireHeader } from '../mirror/codec';
import type { Liveness } from '../upstream/liveness';
import { ProxyError } from './errors';
import { serviceMethods } from './proto';

/** How long a forwarded write waits for the mirror to catch up before answering anyway. */
export const READ_YOUR_WRITES_TIMEOUT_MS = 1_000;

export interface WritePolicy {
  /** The error a write gets instead of being forwarded, or null to forward it. */
  admit(): ProxyError | null;
  /** After a KV write succeeded: wait (bounded) until the mirror holds its revision. */
  awaitMirror(method: string, response: Buffer): Promise<void>;
}

/**
 * Writes go upstream only: in read-only mode they are refused with
 * UNIMPLEMENTED, and while the upstream is lost with UNAVAILABLE at once,
 * never queued. A write that went through returns once the mirror has its
 * revision, so the client's next read through this proxy sees it.
 */
export function createWritePolicy(deps: {
  readonly mode: ProxyMode;
  readonly liveness: Liveness;
  readonly mirror: Mirror;
  readonly metrics: Metrics;
}): WritePolicy {
  return {
    admit() {
      if (deps.mode === 'readonly') {
        deps.metrics.writesRejected.inc({ reason: 'readonly' });
        return new ProxyError('readOnly');
      }
      if (deps.liveness.isLost()) {
        deps.metrics.writesRejected.inc({ reason: 'upstream_lost' });
        return new ProxyError('upstreamLost');
      }
      return null;
    },
    async awaitMirror(method, response) {
      const definition = serviceMethods('etcdserverpb.KV')[method];
      if (definition === undefined) return;
      const decoded = definition.responseDeserialize(response) as { header?: WireHeader };
      await deps.mirror.waitForRevision(toRevision(decoded.header?.revision), READ_YOUR_WRITES_TIMEOUT_MS);
    },
  };
}
