import type { CoreContext } from './context';
import type { CoreService, DuplexHandler } from './call';
import { forwardBidi, observeCall } from './forward';
import { forwardingService, rpcRef } from './forwarding-service';
import { SharedKeepAlive } from '../lease/shared-keepalive';

const SERVICE = 'etcdserverpb.Lease';

/**
 * Lease: forwarded, except that every LeaseKeepAlive stream shares one
 * upstream stream (src/lease/). Grant, Revoke and KeepAlive are
 * writes in the method table: refused while the upstream is lost, so that a
 * lock holder or leader sees the outage and steps down instead of believing
 * a false keep-alive. TimeToLive and Leases only read, so they may be retried
 * on another member.
 */
export function createLeaseService(ctx: CoreContext): CoreService {
  return forwardingService(ctx, SERVICE, { overrides: { LeaseKeepAlive: leaseKeepAliveHandler(ctx) } });
}

/**
 * The LeaseKeepAlive handler: downstream streams share one upstream stream.
 * While the upstream has auth enabled every stream is relayed one-to-one
 * instead, since each carries its own client's token (docs/design.md, "Authentication").
 */
function leaseKeepAliveHandler(ctx: CoreContext): DuplexHandler {
  const rpc = rpcRef(SERVICE, 'LeaseKeepAlive');
  const labels = { service: rpc.service, method: rpc.method };
  const relayed = forwardBidi(ctx, rpc);
  const shared = new SharedKeepAlive({
    pool: ctx.pool,
    leader: ctx.leader,
    liveness: ctx.mirrorReads?.liveness ?? null,
    mode: () => ctx.mode(),
    admitWrite: () => ctx.writes.admit(),
    track: (close) => ctx.streams.add(close),
    log: ctx.log,
    metrics: {
      streamsOpen: (delta) => ctx.metrics.grpcStreamsOpen.inc(labels, delta),
      called: (code, source) => observeCall(ctx, rpc, code, null, source),
      coalesced: () => ctx.metrics.leaseKeepAlivesCoalesced.inc(),
      upstreamStreams: (delta) => ctx.metrics.leaseKeepAliveUpstreamStreams.inc(delta),
    },
  });
  return (call) => {
    if (ctx.mirrorReads?.mirror.authEnabled() === true) relayed(call);
    else shared.serve(call);
  };
}
