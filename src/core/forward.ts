import {
  Metadata,
  status,
  type ClientDuplexStream,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import type { DuplexCall, DuplexHandler, ServerStreamCall, ServerStreamHandler, UnaryCall, UnaryCallback, UnaryHandler } from './call';
import { passBytes } from '../etcd/proto';
import { STALE_HEADER } from '../etcd/metadata';
import type { CoreContext } from './context';
import { ProxyError, toStatus } from '../etcd/errors';
import type { Source } from '../metrics';
import type { UpstreamMember } from '../upstream/pool';
import { isProxyIssuedToken, tokenOf } from '../auth/directory';
import { reasonedCall } from '../upstream/call-reason';
import type { MethodKind } from '../etcd/method-kinds';
import type { WriteSent } from './revision-floor';
import { readHeaderRevision } from '../etcd/response-bytes';

/** Names one RPC for routing, metrics and logs, and says what its calls do (etcd/method-kinds.ts). */
export interface RpcRef {
  readonly service: string;
  readonly method: string;
  /** "/etcdserverpb.KV/Range" */
  readonly path: string;
  /** Read, write or login, per request: a write is refused in read-only mode and while the upstream is lost. */
  readonly kind: (request: Buffer) => MethodKind;
  /** The same for a stream, which has no one request to judge by. */
  readonly streamKind: MethodKind;
}

/**
 * Request metadata a client sets for etcd (auth `token`, `hasleader`, custom
 * keys) goes upstream; transport headers belong to this hop only.
 */
const HOP_BY_HOP = new Set(['user-agent', 'content-type', 'te', 'host', 'connection', 'accept-encoding', 'http2-settings']);

export function upstreamMetadata(incoming: Metadata): Metadata {
  const outgoing = new Metadata();
  for (const key of Object.keys(incoming.getMap())) {
    if (key.startsWith(':') || key.startsWith('grpc-') || HOP_BY_HOP.has(key)) continue;
    for (const value of incoming.get(key)) {
      // A token the proxy issued during an outage is good only here: it never goes upstream.
      if ((key === 'token' || key === 'authorization') && isProxyIssuedToken(String(value))) continue;
      outgoing.add(key, value);
    }
  }
  return outgoing;
}

/**
 * A token the proxy issued during an outage is never sent upstream; etcd,
 * which never issued it, would answer "invalid auth token", and so does the
 * proxy (the client then logs in with etcd, as clientv3 and APISIX do).
 */
function carriesProxyToken(metadata: Metadata): ProxyError | null {
  const token = tokenOf(metadata);
  return token !== undefined && isProxyIssuedToken(token) ? new ProxyError('invalidAuthToken') : null;
}

/** etcd's answers to a token it no longer takes. */
const STALE_TOKEN_ERRORS = new Set(['etcdserver: invalid auth token', 'etcdserver: revision of auth store is old']);

function forgetToken(ctx: CoreContext, metadata: Metadata): void {
  const token = tokenOf(metadata);
  if (token !== undefined) ctx.mirrorReads?.directory.forget(token);
}

export function observeCall(ctx: CoreContext, rpc: RpcRef, code: status, startedMs: number | null, source: Source = 'upstream'): void {
  ctx.metrics.calls.count(rpc, code, source);
  if (startedMs !== null) {
    const seconds = (performance.now() - startedMs) / 1000;
    ctx.metrics.grpcRequestDuration.observe(durationLabels(rpc), seconds);
  }
}

/** The histogram's labels of an RPC, made once: prom-client keeps no reference, so one object serves every call. */
const durationLabelsByRpc = new WeakMap<RpcRef, { service: string; method: string }>();
function durationLabels(rpc: RpcRef): { service: string; method: string } {
  let labels = durationLabelsByRpc.get(rpc);
  if (labels === undefined) {
    labels = { service: rpc.service, method: rpc.method };
    durationLabelsByRpc.set(rpc, labels);
  }
  return labels;
}

export interface UnaryForwardOptions {
  /** Rewrites a successful upstream answer before it reaches the client. */
  readonly transformResponse?: (response: Buffer) => Buffer;
  /** Awaited after a successful answer, before the client sees it (read your writes). */
  readonly beforeReply?: (response: Buffer, request: Buffer) => Promise<void>;
  /**
   * A read's answer should name no revision below this one (what this
   * process already handed out): a member answering below it is passed over
   * for the next (tryMembers).
   */
  readonly notBelow?: () => number;
}

/**
 * The refusal a call of this kind gets instead of going upstream, if any.
 * Every forwarding path asks it, so no service file can forget to: what a
 * method does is decided by the one table, not by whoever wires it.
 */
function refusalFor(ctx: CoreContext, kind: MethodKind): ProxyError | null {
  return kind === 'write' ? ctx.writes.admit() : null;
}

/**
 * Forwards one unary call. The client's deadline and cancellation go with it;
 * the upstream's answer or error comes back unchanged. A write is refused
 * first in read-only mode or while the upstream is lost; then the members are
 * tried in order (tryMembers).
 */
export function forwardUnary(ctx: CoreContext, rpc: RpcRef, options: UnaryForwardOptions = {}): UnaryHandler {
  return (call, callback) => {
    const started = performance.now();
    const kind = rpc.kind(call.request);
    const refusal = refusalFor(ctx, kind) ?? carriesProxyToken(call.metadata);
    if (refusal !== null) {
      observeCall(ctx, rpc, refusal.code, started, 'proxy');
      callback(toStatus(refusal));
      return;
    }
    const token = tokenOfAnotherLogMaybe(ctx, call.metadata);
    if (token === null) {
      forwardAdmitted(ctx, rpc, options, call, callback, kind, started);
      return;
    }
    void ctx.mirrorReads?.directory.isOfAnotherLog(token, false).then(
      (past) => {
        if (!past) forwardAdmitted(ctx, rpc, options, call, callback, kind, started);
        else {
          observeCall(ctx, rpc, status.UNAUTHENTICATED, started, 'proxy');
          callback(toStatus(new ProxyError('invalidAuthToken')));
        }
      },
      () => forwardAdmitted(ctx, rpc, options, call, callback, kind, started),
    );
  };
}

/**
 * The client's simple token, when it names a raft index past what the proxy
 * last saw of etcd's log (with auth on): etcd restored from a backup holds a
 * call carrying a token of its old log until the call's deadline (or for good
 * without one), so the members are looked at first (auth/token-log-check.ts).
 */
function tokenOfAnotherLogMaybe(ctx: CoreContext, metadata: Metadata): string | null {
  const reads = ctx.mirrorReads;
  if (reads === undefined || reads === null || !reads.mirror.authEnabled()) return null;
  const token = tokenOf(metadata);
  return token !== undefined && reads.directory.mayBeOfAnotherLog(token) ? token : null;
}

/** Forwards a call the proxy does not refuse itself: see forwardUnary. */
function forwardAdmitted(ctx: CoreContext, rpc: RpcRef, options: UnaryForwardOptions, call: UnaryCall, callback: UnaryCallback, kind: MethodKind, started: number): void {
  const progress: UnaryProgress = { pending: undefined, cancelled: false };
  call.on('cancelled', () => {
    progress.cancelled = true;
    progress.pending?.cancel();
  });

  const finish = (error: unknown, response?: Buffer): void => {
    if (error !== null) {
      const result = toStatus(error);
      // etcd no longer takes the client's token: whatever the proxy knew by it goes at once.
      if (STALE_TOKEN_ERRORS.has(result.details)) forgetToken(ctx, call.metadata);
      // Held to the deadline: a restored etcd holds a token of its old log so; the next call with it is looked at.
      else if (result.code === status.DEADLINE_EXCEEDED) heldToken(ctx, call.metadata);
      observeCall(ctx, rpc, progress.cancelled ? status.CANCELLED : result.code, started);
      callback(result);
      return;
    }
    observeCall(ctx, rpc, status.OK, started);
    callback(null, response);
  };

  // A write of keys gets a revision newer than every one etcd had made when it was sent (so, than what was
  // handed out by then). Other services' headers are left out: not all of them carry the keys' revision.
  const keysWrite = kind === 'write' && rpc.path.startsWith('/etcdserverpb.KV/');
  const reads = ctx.mirrorReads;
  const before = keysWrite && reads !== undefined && reads !== null ? { handedOut: reads.floor.revision, mirrored: reads.store.meta().revision } : null;
  tryMembers(ctx, rpc, call, kind, progress, options.notBelow, (error, answer, headers) => {
    if (error !== null) {
      finish(error);
      return;
    }
    // An upstream tier (another etcd-cache-proxy) answering from its mirror marks the answer stale: the mark
    // goes on to the client, and what the proxy knows of its tier follows (upstream/tier-stale.ts).
    ctx.mirrorReads?.tierStale.noteAnswer(headers);
    if (headers !== null && headers.get(STALE_HEADER)[0] === 'true') {
      const marked = new Metadata();
      marked.set(STALE_HEADER, 'true');
      call.sendMetadata(marked);
    }
    reply(ctx, rpc, options, answer, call.request, before, finish);
  });
}

/** A forwarded call ran into its deadline: if it carried a token, the members' logs are looked at again (auth/token-log-check.ts). */
function heldToken(ctx: CoreContext, metadata: Metadata): void {
  const token = tokenOf(metadata);
  if (token !== undefined && ctx.mirrorReads?.mirror.authEnabled() === true) ctx.mirrorReads.directory.heldWith(token);
}

/** One forwarded unary call's state upstream: the attempt under way, and whether the client gave up. */
interface UnaryProgress {
  pending: ClientUnaryCall | undefined;
  cancelled: boolean;
}

/** An answer's header revision; 0 (not behind anything) for bytes that do not parse. */
function answerRevision(answer: Buffer): number {
  try {
    return readHeaderRevision(answer);
  } catch {
    return 0;
  }
}

/**
 * Services whose every write etcd answers only once its leader has committed
 * it: a successful one is evidence of a leader, and spares the member a
 * probe (liveness.ts). Maintenance and Cluster hold calls a member answers
 * alone (Defragment), so they prove nothing.
 */
const COMMITTED_BY_RAFT = new Set(['KV', 'Lease']);

/**
 * Sends a unary request to the members in order. A read that finds a member
 * unreachable is tried on the next one; a write or login only when it never
 * left the proxy, since its outcome is unknown once sent. A read answered
 * below `notBelow()` (a revision this process already handed out: a member
 * cut off from its peers, or catching up, still answers serializable reads
 * from what it has) is tried on the next one too: through one proxy, as
 * from one etcd member, a client's revisions never go back. The newest such
 * answer is given when no member does better. `done` gets the last error,
 * or the answer.
 */
function tryMembers(
  ctx: CoreContext,
  rpc: RpcRef,
  call: UnaryCall,
  kind: MethodKind,
  progress: UnaryProgress,
  notBelow: (() => number) | undefined,
  done: (error: ServiceError | ProxyError | null, answer: Buffer, headers: Metadata | null) => void,
): void {
  const members = ctx.pool.candidates();
  const metadata = upstreamMetadata(call.metadata);
  const idempotent = kind === 'read';
  /** The newest answer so far that was below the floor, and its revision. */
  let behind: { answer: Buffer; revision: number; headers: Metadata | null } | undefined;
  const attempt = (index: number): void => {
    const member: UpstreamMember | undefined = members[index];
    if (member === undefined) {
      if (behind !== undefined) done(null, behind.answer, behind.headers);
      else done(new ProxyError('noUpstream'), Buffer.alloc(0), null);
      return;
    }
    // A member the proxy sends writes to is watched more closely (liveness.ts): a write needs its leader. A read
    // needs none (a failed one is tried on the next member), and each would cost etcd half a minute of probes
    // of the member it went to: a regional passes on its edges' reads of etcd's own status.
    if (kind !== 'read') ctx.mirrorReads?.liveness.used(member);
    let headers: Metadata | null = null;
    progress.pending = member.client.makeUnaryRequest(
      rpc.path,
      passBytes,
      passBytes,
      call.request,
      metadata,
      reasonedCall('client', call.getDeadline()),
      (error: ServiceError | null, response?: Buffer) => {
        progress.pending = undefined;
        if (error === null && kind === 'write' && COMMITTED_BY_RAFT.has(rpc.service)) ctx.mirrorReads?.liveness.heard(member);
        const retry = error !== null && (idempotent || neverSent(error)) && !progress.cancelled && error.code === status.UNAVAILABLE && index + 1 < members.length;
        if (retry) {
          ctx.log.debug({ rpc: rpc.path, member: member.endpoint.url, err: error.details }, 'retried on another member');
          ctx.metrics.upstreamFailovers.inc({ kind: idempotent ? 'read_retry' : 'write_not_sent' });
          attempt(index + 1);
          return;
        }
        const floor = idempotent && notBelow !== undefined ? notBelow() : 0;
        const revision = error === null && response !== undefined && floor > 0 ? answerRevision(response) : floor;
        if (revision < floor && !progress.cancelled) {
          if (behind === undefined || revision > behind.revision) behind = { answer: response ?? Buffer.alloc(0), revision, headers };
          if (index + 1 < members.length) {
            ctx.log.debug({ rpc: rpc.path, member: member.endpoint.url, revision, floor }, 'answered below a revision already handed out: retried on another member');
            ctx.metrics.upstreamFailovers.inc({ kind: 'read_retry' });
            attempt(index + 1);
            return;
          }
        }
        // The last member failed, or answered no newer: the newest answer below the floor, else what came.
        if (behind !== undefined && (error !== null || revision < behind.revision)) done(null, behind.answer, behind.headers);
        // Not sent, and no member left to try: the proxy's own words, not grpc-js's about one connection.
        else if (error !== null && neverSent(error) && index + 1 >= members.length) done(new ProxyError('noUpstream'), Buffer.alloc(0), null);
        else done(error, response ?? Buffer.alloc(0), headers);
      },
    );
    progress.pending.on('metadata', (received: Metadata) => {
      headers = received;
    });
  };
  attempt(0);
}

/** A successful answer goes to the client rewritten (transformResponse) and after beforeReply, when asked for. */
function reply(ctx: CoreContext, rpc: RpcRef, options: UnaryForwardOptions, answer: Buffer, request: Buffer, before: WriteSent | null, finish: (error: unknown, response?: Buffer) => void): void {
  const send = (): void => {
    try {
      ctx.mirrorReads?.floor.noteAnswer(answer, before);
      finish(null, options.transformResponse ? options.transformResponse(answer) : answer);
    } catch (transformError) {
      ctx.log.error({ rpc: rpc.path, err: transformError }, 'upstream answer could not be rewritten');
      finish(new ProxyError('internal', { cause: transformError }));
    }
  };
  if (options.beforeReply === undefined) send();
  else options.beforeReply(answer, request).then(send, send);
}

/**
 * The member could not be reached at all, so the request never left the
 * proxy (grpc-js fails the pick before opening a stream): even a write may
 * go to the next member then. Anything else may have reached etcd.
 */
function neverSent(error: ServiceError): boolean {
  return error.code === status.UNAVAILABLE && error.details.startsWith('No connection established');
}

type ServerStream = DuplexCall | ServerStreamCall;
type UpstreamStream = ClientDuplexStream<Buffer, Buffer> | ClientReadableStream<Buffer>;

/**
 * Relays messages from upstream to the client with backpressure, ends the
 * client's call with the upstream's final status, and registers the pair so a
 * graceful stop can end it with UNAVAILABLE.
 */
function relayStream(ctx: CoreContext, rpc: RpcRef, call: ServerStream, upstream: UpstreamStream): void {
  let finished = false;
  const labels = { service: rpc.service, method: rpc.method };
  ctx.metrics.grpcStreamsOpen.inc(labels);

  const end = (result: StatusObject): void => {
    if (finished) return;
    finished = true;
    untrack();
    ctx.metrics.grpcStreamsOpen.dec(labels);
    observeCall(ctx, rpc, result.code, null);
    if (result.code === status.OK) call.end(result.metadata);
    else call.emit('error', result);
  };
  const untrack = ctx.streams.add((shutdownStatus) => {
    end(shutdownStatus);
    upstream.cancel();
  });

  upstream.on('data', (message: Buffer) => {
    if (!call.write(message)) {
      upstream.pause();
      call.once('drain', () => upstream.resume());
    }
  });
  upstream.on('error', (error: unknown) => end(toStatus(error)));
  upstream.on('status', (final: StatusObject) => {
    if (final.code === status.OK) end(final);
  });
  call.on('cancelled', () => {
    if (finished) return;
    finished = true;
    untrack();
    ctx.metrics.grpcStreamsOpen.dec(labels);
    observeCall(ctx, rpc, status.CANCELLED, null);
    upstream.cancel();
  });
}

/**
 * The member a new stream goes to. A stream is not retried elsewhere once
 * open (its messages may have had effects); clients re-open it themselves.
 */
function streamMember(ctx: CoreContext, call: ServerStream): UpstreamMember | undefined {
  const member = ctx.pool.candidates()[0];
  if (member === undefined) call.emit('error', toStatus(new ProxyError('noUpstream')));
  return member;
}

/** A stream of a writing method is refused when it opens, as a unary write is. */
function refuseStream(ctx: CoreContext, rpc: RpcRef, call: ServerStream): boolean {
  const refusal = refusalFor(ctx, rpc.streamKind);
  if (refusal === null) return false;
  observeCall(ctx, rpc, refusal.code, null, 'proxy');
  call.emit('error', toStatus(refusal));
  return true;
}

/** Forwards a bidirectional stream (Watch, LeaseKeepAlive) to one member. */
export function forwardBidi(ctx: CoreContext, rpc: RpcRef): DuplexHandler {
  return (call) => {
    if (refuseStream(ctx, rpc, call)) return;
    const member = streamMember(ctx, call);
    if (member === undefined) return;
    const upstream = member.client.makeBidiStreamRequest(rpc.path, passBytes, passBytes, upstreamMetadata(call.metadata), reasonedCall('client', call.getDeadline()));
    relayStream(ctx, rpc, call, upstream);
    call.on('data', (message: Buffer) => {
      if (!upstream.write(message)) {
        call.pause();
        upstream.once('drain', () => call.resume());
      }
    });
    call.on('end', () => upstream.end());
  };
}

/** Forwards a server-streaming call (Maintenance.Snapshot) to one member. */
export function forwardServerStream(ctx: CoreContext, rpc: RpcRef): ServerStreamHandler {
  return (call) => {
    if (refuseStream(ctx, rpc, call)) return;
    const member = streamMember(ctx, call);
    if (member === undefined) return;
    const upstream = member.client.makeServerStreamRequest(
      rpc.path,
      passBytes,
      passBytes,
      call.request,
      upstreamMetadata(call.metadata),
      reasonedCall('client', call.getDeadline()),
    );
    relayStream(ctx, rpc, call, upstream);
  };
}
