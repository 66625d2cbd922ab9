import { status } from '@grpc/grpc-js';
import { ProxyError, toStatus } from '../etcd/errors';
import { LIVENESS_PROBE_HEADER, STALE_HEADER } from '../etcd/metadata';
import { encodeHeaderField } from '../etcd/response-bytes';
import { mirrorHeaderBytes } from '../mirror/response-header';
import type { UnaryHandler } from './call';
import type { CoreContext } from './context';
import { observeCall, type RpcRef } from './forward';

/** What this proxy can tell a proxy in front of it that probes its liveness, without asking etcd. */
export type TierProbeAnswer = 'leader' | 'no-leader' | 'ask-upstream';

/** What the upstream side shows of etcd, as the answer to a probe needs it. */
export interface TierProbeEvidence {
  /** How long no member with a leader has answered (ms). */
  readonly quietForMs: number;
  /** How recent that answer must be to vouch for a leader now: the interval this proxy's own probes keep. */
  readonly evidenceIntervalMs: number;
  /** No member with a leader answered within the upstream timeout. */
  readonly lost: boolean;
  /** This proxy's own upstream is a tier that answers stale. */
  readonly tierStale: boolean;
  /** A member with a leader has answered since this process started. */
  readonly answeredEver: boolean;
}

/**
 * How to answer a liveness probe of a proxy in front of this one. Its
 * question is "does the cluster behind you have a leader now": a member with
 * a leader answered this proxy within two of its own probe intervals (the
 * mirror's require-leader watch answers progress requests every second, so
 * while etcd is well there is always such an answer), and nothing above says
 * stale: yes. Lost: no, at once, as an etcd member cut off from its leader
 * says it. In between (etcd quiet, not yet lost), and before anything of etcd
 * was heard at all: the probe goes on to etcd, as any Status does, and
 * etcd's answer decides.
 */
export function tierProbeAnswer(evidence: TierProbeEvidence): TierProbeAnswer {
  // Knowing nothing of etcd yet (just started, or in a cycle of proxies where nobody ever reaches etcd), this
  // proxy vouches for nothing: the probe goes on, and a cycle shows as the loop refusal it comes back with.
  if (!evidence.answeredEver) return 'ask-upstream';
  if (evidence.lost || evidence.tierStale) return 'no-leader';
  return evidence.quietForMs < 2 * evidence.evidenceIntervalMs ? 'leader' : 'ask-upstream';
}

/**
 * Maintenance.Status, answering the marked liveness probes of proxies in
 * front of this one (a regional tier's edges) from what this proxy knows of
 * etcd, and forwarding every other Status (etcdctl endpoint status, clients'
 * health checks) to etcd as before. Without this, each edge's probe would be
 * passed on to etcd, and would set this proxy probing the member it went
 * to: a tier would cost etcd more than the flat fleet it stands for.
 *
 * The answer with a leader is a StatusResponse holding only the mirror's
 * header (what a probe reads is that it succeeded, and the response headers
 * that say a proxy answered); the answer without one is etcd's `no leader`
 * refusal, marked stale, so the edge counts this proxy as a member without a
 * leader (alive, serving what it holds) and turns to another regional that
 * has one.
 */
export function answeringTierProbes(ctx: CoreContext, rpc: RpcRef, forward: UnaryHandler): UnaryHandler {
  const reads = ctx.mirrorReads;
  if (reads === null) return forward;
  return (call, callback) => {
    if (call.metadata.get(LIVENESS_PROBE_HEADER).length === 0) {
      forward(call, callback);
      return;
    }
    const answer = tierProbeAnswer({
      quietForMs: reads.liveness.quietForMs(),
      evidenceIntervalMs: reads.liveness.evidenceIntervalMs,
      lost: reads.liveness.isLost(),
      tierStale: reads.tierStale.isStale(),
      answeredEver: reads.liveness.hasAnswered(),
    });
    const started = performance.now();
    if (answer === 'ask-upstream') {
      forward(call, callback);
    } else if (answer === 'leader') {
      observeCall(ctx, rpc, status.OK, started, 'proxy');
      callback(null, encodeHeaderField(mirrorHeaderBytes(reads.store.meta())));
    } else {
      const refusal = toStatus(new ProxyError('noLeader'));
      refusal.metadata.set(STALE_HEADER, 'true');
      observeCall(ctx, rpc, refusal.code, started, 'proxy');
      callback(refusal);
    }
  };
}
