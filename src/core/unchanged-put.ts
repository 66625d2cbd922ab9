import { status } from '@grpc/grpc-js';
import type { UnaryHandler } from './call';
import type { ProxyMode } from '../settings/types';
import { toWireKeyValue } from '../etcd/wire';
import type { CoreContext } from './context';
import { observeCall, type RpcRef } from './forward';
import { mirrorHeader } from '../mirror/response-header';
import { markStale } from './mirror-reads';
import type { MirrorReadDeps } from './mirror-read-deps';
import type { AnyMethodDefinition } from '../etcd/proto';

interface WirePutRequest {
  key?: Buffer;
  value?: Buffer;
  lease?: string;
  prev_kv?: boolean;
  ignore_value?: boolean;
  ignore_lease?: boolean;
}

/**
 * docs/design.md, "Writes": a gateway must be able to start during an outage, and
 * APISIX PUTs a fixed marker under each of its directories at start and dies
 * on an error. So while the upstream is lost, a plain Put (no lease, no
 * ignore flags) of a key the mirror already holds with exactly that value and
 * no lease is acknowledged from the mirror, marked stale. It changes nothing
 * etcd holds, so nothing is lost; every other write is still refused.
 */
export function acknowledgeUnchangedPut(
  ctx: CoreContext,
  deps: MirrorReadDeps,
  mode: () => ProxyMode,
  rpc: RpcRef,
  method: AnyMethodDefinition,
  forward: UnaryHandler,
): UnaryHandler {
  return (call, callback) => {
    if (mode() !== 'readwrite' || !deps.liveness.isLost() || deps.mirror.authEnabled()) {
      forward(call, callback);
      return;
    }
    let request: WirePutRequest;
    try {
      request = method.requestDeserialize(call.request) as WirePutRequest;
    } catch {
      forward(call, callback);
      return;
    }
    const held = request.key === undefined ? undefined : deps.store.get(request.key);
    const plain = (request.lease ?? '0') === '0' && request.ignore_value !== true && request.ignore_lease !== true;
    // A key whose newest version this machine withholds (grayscale/) holds something else in etcd.
    const unchanged =
      held !== undefined && held.lease === '0' && held.value.equals(request.value ?? Buffer.alloc(0)) && deps.store.withheld(held.key) === undefined;
    if (!plain || !unchanged) {
      forward(call, callback);
      return;
    }
    const response = {
      header: mirrorHeader(deps.store.meta()),
      ...(request.prev_kv === true ? { prev_kv: toWireKeyValue(held) } : {}),
    };
    markStale(call);
    deps.metrics.unchangedPutsAcknowledged.inc();
    observeCall(ctx, rpc, status.OK, null, 'mirror');
    callback(null, method.responseSerialize(response));
  };
}
