import type { ClientDuplexStream } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import type { EncodedEvent } from '../etcd/event-bytes';
import { readWatchResponse } from '../etcd/watch-bytes';
import { toRevision, type WireWatchResponse } from '../etcd/wire';
import type { Logger } from '../log';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamMember } from '../upstream/pool';
import type { UpstreamLogin } from '../auth/upstream-login';
import { reasonedCall } from '../upstream/call-reason';
import { AuthRefused, isAuthCancelReason } from '../auth/auth-gate';
import { KeyRanges } from '../etcd/key-ranges';
import { isOutOfSpace } from '../store/write-hold';
import type { ProgressTrust } from './range-watermark';
import { WatchDeliveries, type WatchDelivery } from './watch-deliveries';
import { startProgressRequests } from './watch-progress';

/** The watch's member stopped answering: resume elsewhere at once, without the error backoff. */
export class MemberFailed extends Error {
  constructor(readonly member: string) {
    super(`upstream member ${member} stopped answering; moving the mirror watch`);
  }
}

export class RelistNeeded extends Error {
  constructor(readonly compactRevision: number) {
    super(`upstream compacted past the mirror (compact revision ${compactRevision})`);
  }
}

export type { WatchDelivery } from './watch-deliveries';

export interface WatchStreamDeps {
  readonly member: UpstreamMember;
  readonly ranges: KeyRanges;
  /** Watch each range on its own (the mirror's user may not read the keys between them). */
  readonly separate: boolean;
  /** How far etcd's answers to progress requests can be believed (separate watches only). */
  readonly trust: ProgressTrust;
  readonly startRevision: number;
  readonly identity: UpstreamLogin;
  readonly liveness: Liveness;
  readonly log: Logger;
  /** Commits one delivery; throws when it cannot (the stream is then given up). */
  readonly deliver: (delivery: WatchDelivery) => void;
  /** The upstream accepted the watch: it lets the mirror's user read what it asked for. */
  readonly onCreated: () => void;
  readonly onStream: (delta: number) => void;
}

export interface WatchStream {
  /** Settles when the stream ends: resolved by cancel(), else rejected with why. */
  readonly done: Promise<void>;
  /** Ends the stream with `error`, or quietly when null. */
  finish(error: Error | null): void;
}

/**
 * The mirror's upstream watch: one watch over the span from the first
 * mirrored range to the last (events in the gaps dropped, their revisions
 * still proving the mirrored keys unchanged), or, when the mirror's user
 * may not read those gaps, one watch per range on the same stream, merged
 * into revision order by a RangeWatermark. Require-leader, with prev_kv and
 * progress notifications; responses stay etcd's bytes.
 */
export function openWatchStream(deps: WatchStreamDeps): WatchStream {
  const { member, log } = deps;
  let resolveDone: () => void = () => undefined;
  let rejectDone: (error: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const call = openCall(deps);
  deps.onStream(1);
  deps.liveness.used(member);
  const deliveries = new WatchDeliveries(deps.ranges, deps.separate, deps.startRevision, deps.trust, deps.deliver);
  const progress = startProgressRequests(() => call.write({ progress_request: {} }), deps.liveness.evidenceIntervalMs, deliveries.merging ? () => deliveries.hasHeld() : null);
  let settled = false;

  const finish = (error: Error | null): void => {
    if (settled) return;
    settled = true;
    progress.stop();
    deps.onStream(-1);
    call.cancel();
    if (error === null) resolveDone();
    else rejectDone(error);
  };

  call.on('data', (bytes: Buffer) => {
    progress.heard();
    deps.liveness.heard(member);
    let response: WireWatchResponse;
    let received: EncodedEvent[];
    try {
      ({ response, events: received } = readWatchResponse(bytes));
    } catch (error) {
      log.error({ err: error }, 'mirror watch response does not parse; reconnecting');
      finish(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    if (response.canceled === true) {
      finish(whyCancelled(response));
      return;
    }
    if (response.created === true && deliveries.created(response)) deps.onCreated();
    try {
      deliveries.receive(response, received);
    } catch (error) {
      // No room on the disk is logged once, where the store begins holding its writes back.
      if (!isOutOfSpace(error)) log.error({ err: error }, 'mirror could not commit a watch response; reconnecting');
      finish(error instanceof Error ? error : new Error(String(error)));
    }
  });
  call.on('error', (error) => finish(error));
  call.on('end', () => finish(new Error('upstream ended the mirror watch')));
  for (const range of deliveries.watched) {
    call.write({ create_request: { ...KeyRanges.toRequest(range), start_revision: String(deps.startRevision), prev_kv: true, progress_notify: true } });
  }
  return { done, finish };
}

/**
 * The watch call at the member, as the mirror's user. Require-leader: etcd
 * ends this watch when its member has had no leader for a few election
 * timeouts, and refuses it while it has none, so the mirror never follows a
 * member cut off.
 */
function openCall({ member, identity }: WatchStreamDeps): ClientDuplexStream<object, Buffer> {
  const watch = etcdMethod('etcdserverpb.Watch', 'Watch');
  const metadata = identity.metadataFor(member);
  metadata.set('hasleader', 'true');
  return member.client.makeBidiStreamRequest(watch.path, watch.requestSerialize, passBytes, metadata, reasonedCall('mirror-watch')) as ClientDuplexStream<object, Buffer>;
}

/** Why etcd cancelled the watch: a compaction past the mirror means a list; a refusal of the user is auth's. */
function whyCancelled(response: WireWatchResponse): Error {
  const compacted = toRevision(response.compact_revision);
  const reason = response.cancel_reason ?? '';
  if (compacted > 0) return new RelistNeeded(compacted);
  if (isAuthCancelReason(reason)) return new AuthRefused(reason);
  return new Error(`upstream cancelled the mirror watch: ${reason === '' ? 'no reason' : reason}`);
}

/**
 * Whether etcd's answers to progress requests wait for the stream's
 * watchers (etcd 3.4.31+, 3.5.13+, 3.6+), from the version Status reports.
 */
export function progressTrustFor(version: string | undefined): ProgressTrust {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version ?? '');
  const [major, minor, patch] = match === null ? [0, 0, 0] : [Number(match[1]), Number(match[2]), Number(match[3])];
  const reliable = major > 3 || (major === 3 && (minor > 5 || (minor === 5 && patch >= 13) || (minor === 4 && patch >= 31)));
  // Older: an answer counts once a second one, a tenth of a second later, came with no event between them,
  // and the watches have had a few of etcd's 100 ms catch-up rounds.
  return reliable ? { kind: 'reliable' } : { kind: 'quiet', quietMs: 100, catchUpMs: 500 };
}
