import { status, type StatusObject } from '@grpc/grpc-js';
import { ETCD_ERRORS } from '../etcd/errors';
import type { CoreContext } from './context';
import { forwardBidi, observeCall, upstreamMetadata, type RpcRef } from './forward';
import type { CoreService, DuplexCall, DuplexHandler } from './call';
import { forwardingService, rpcRef } from './forwarding-service';
import type { MirrorReadDeps } from './mirror-read-deps';
import { WatchSession, type WatchSessionDeps } from '../watch/session';
import { WatchRelay } from '../watch/watch-relay';
import { floodMemory, type FloodMemory } from './flood-memory';

const SERVICE = 'etcdserverpb.Watch';

type WatchHubContext = NonNullable<CoreContext['watchHub']>;

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
  const streams: WatchStreams = {
    ctx,
    rpc,
    reads,
    deps: sessionDeps(ctx, reads, hub),
    sessions: new Set(),
    memory: floodMemory(),
    labels: { service: rpc.service, method: rpc.method },
  };
  const ticker = setInterval(() => streams.sessions.forEach((session) => session.tick()), hub.progressNotifyIntervalMs);
  ticker.unref();

  const watch: DuplexHandler = (call) => {
    if (reads.mirror.authRequired()) {
      relayed(call);
      return;
    }
    // etcd ends a require-leader watch stream when its member has no leader (and refuses one then); the
    // proxy, when etcd ends its own (the sentinel) or when the upstream is lost, whichever comes first.
    const requireLeader = call.metadata.get('hasleader')[0] === 'true';
    if (requireLeader && (reads.liveness.isLost() || ctx.leader.noLeader())) {
      observeCall(ctx, rpc, status.UNAVAILABLE, null, 'proxy');
      call.emit('error', noLeaderStatus());
      return;
    }
    serveSession(streams, call, requireLeader);
  };
  return forwardingService(ctx, SERVICE, { overrides: { Watch: watch } });
}

function noLeaderStatus(): Partial<StatusObject> {
  return { ...ETCD_ERRORS.noLeader };
}

/**
 * What every session is served from: the hub, the mirror, and one relay for
 * the whole process (whose known revisions go when the mirror is discarded).
 */
function sessionDeps(ctx: CoreContext, reads: MirrorReadDeps, hub: WatchHubContext): WatchSessionDeps {
  const relay = new WatchRelay(
    ctx.pool,
    () => reads.store.meta().revision,
    {
      streams: (delta) => ctx.metrics.upstreamWatchStreams.inc(delta),
      watches: (delta) => ctx.metrics.upstreamRelayedWatches.inc(delta),
    },
    (token) => (reads.mirror.authEnabled() ? reads.directory.isOfAnotherLog(token) : Promise.resolve(false)),
  );
  reads.mirror.on('discarded', (previous) => relay.discard(previous + 1));
  return {
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
  };
}

/** What the streams of the watch service share. */
interface WatchStreams {
  readonly ctx: CoreContext;
  readonly rpc: RpcRef;
  readonly reads: MirrorReadDeps;
  /** Built once: every session reads the same parts. */
  readonly deps: WatchSessionDeps;
  /** Open sessions, which the progress ticker visits. */
  readonly sessions: Set<WatchSession>;
  /** Gives the memory of a flood of streams back once they have closed. */
  readonly memory: FloodMemory;
  readonly labels: { service: string; method: string };
}

/**
 * Serves one downstream stream with its own session until it ends, once: by
 * the client, by a graceful stop, or for a require-leader stream when the
 * upstream is lost or etcd would end it.
 */
function serveSession(streams: WatchStreams, call: DuplexCall, requireLeader: boolean): void {
  const { ctx, rpc, reads, sessions, labels } = streams;
  const leader = ctx.leader;
  const session = new WatchSession(call, streams.deps);
  sessions.add(session);
  ctx.metrics.grpcStreamsOpen.inc(labels);
  let finished = false;
  const finish = (code: status): void => {
    if (finished) return;
    finished = true;
    sessions.delete(session);
    session.close();
    streams.memory.streamClosed();
    reads.liveness.off('lost', onLost);
    leader.off('noLeader', onLost);
    releaseLeader();
    untrack();
    ctx.metrics.grpcStreamsOpen.dec(labels);
    observeCall(ctx, rpc, code, null, 'mirror');
  };
  const onLost = (): void => {
    finish(status.UNAVAILABLE);
    call.emit('error', noLeaderStatus());
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
}
