import { status } from '@grpc/grpc-js';
import type { CoreContext } from './context';
import { forwardBidi, observeCall, upstreamMetadata } from './forward';
import type { CoreService, DuplexHandler } from './call';
import { forwardingService, rpcRef } from './forwarding-service';
import { WatchSession } from '../watch/session';
import { WatchRelay } from '../watch/watch-relay';

const SERVICE = 'etcdserverpb.Watch';
const NO_LEADER = 'etcdserver: no leader';

/**
 * Watch: every stream is served by a WatchSession over the watch hub (the
 * mirror's events), which relays upstream only the watches the mirror cannot
 * serve, through one relay for all streams so that identical ones share an
 * upstream watch. Without a mirror, or while the upstream refuses it (auth),
 * streams are relayed one-to-one.
 */
export function createWatchService(ctx: CoreContext): CoreService {
  const hub = ctx.watchHub;
  const reads = ctx.mirrorReads;
  if (hub === null || reads === null) return forwardingService(ctx, SERVICE);
  const rpc = rpcRef(SERVICE, 'Watch');
  const relayed = forwardBidi(ctx, rpc);
  const sessions = new Set<WatchSession>();
  const relay = new WatchRelay(ctx.pool, () => reads.store.meta().revision, {
    streams: (delta) => ctx.metrics.upstreamWatchStreams.inc(delta),
    watches: (delta) => ctx.metrics.upstreamRelayedWatches.inc(delta),
  });
  reads.mirror.on('discarded', () => relay.forgetRevisions());
  const ticker = setInterval(() => sessions.forEach((session) => session.tick()), hub.progressNotifyIntervalMs);
  ticker.unref();
  const labels = { service: rpc.service, method: rpc.method };
  const leader = ctx.leader;

  const watch: DuplexHandler = (call) => {
    if (reads.mirror.authRequired()) {
      relayed(call);
      return;
    }
    // etcd ends a require-leader watch stream when its member has no leader (and refuses one then); the
    // proxy, when etcd ends its own (the sentinel) or when the upstream is lost, whichever comes first.
    const requireLeader = call.metadata.get('hasleader')[0] === 'true';
    if (requireLeader && (reads.liveness.isLost() || leader.noLeader())) {
      observeCall(ctx, rpc, status.UNAVAILABLE, null, 'proxy');
      call.emit('error', { code: status.UNAVAILABLE, details: NO_LEADER });
      return;
    }
    const session = new WatchSession(call, {
      hub: hub.hub,
      store: reads.store,
      mirror: reads.mirror,
      ranges: reads.ranges,
      grayscale: reads.grayscale,
      relay,
      upstreamSilent: () => reads.liveness.isSilent(),
      mayBeCompacted: (revision) => reads.compaction.mayBeCompacted(revision),
      permission: (metadata, range) => reads.directory.decide(metadata, [range]),
      bufferBytes: hub.bufferBytes,
      upstreamMetadata,
      metrics: {
        eventsSent: (count) => {
          ctx.metrics.watchEventsSent.inc(count);
          reads.auth.noteServed();
        },
        slowCancelled: (count) => ctx.metrics.slowWatchersCancelled.inc(count),
        watchers: (source, delta) => ctx.metrics.watchers.inc({ source }, delta),
      },
    });
    sessions.add(session);
    ctx.metrics.grpcStreamsOpen.inc(labels);
    let finished = false;
    const finish = (code: status): void => {
      if (finished) return;
      finished = true;
      sessions.delete(session);
      session.close();
      reads.liveness.off('lost', onLost);
      leader.off('noLeader', onLost);
      releaseLeader();
      untrack();
      ctx.metrics.grpcStreamsOpen.dec(labels);
      observeCall(ctx, rpc, code, null, 'mirror');
    };
    const onLost = (): void => {
      finish(status.UNAVAILABLE);
      call.emit('error', { code: status.UNAVAILABLE, details: NO_LEADER });
    };
    // Only require-leader streams care; thousands of plain streams must not pile listeners on liveness.
    let releaseLeader = (): void => undefined;
    if (requireLeader) {
      reads.liveness.on('lost', onLost);
      leader.on('noLeader', onLost);
      releaseLeader = leader.acquire();
    }
    const untrack = ctx.streams.add((shutdown) => {
      finish(shutdown.code);
      call.emit('error', shutdown);
    });
    call.on('data', (message: Buffer) => session.receive(message));
    call.on('cancelled', () => finish(status.CANCELLED));
    call.on('error', () => finish(status.CANCELLED));
  };
  return forwardingService(ctx, SERVICE, { overrides: { Watch: watch } });
}
