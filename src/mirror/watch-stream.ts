import type { ClientDuplexStream } from '@grpc/grpc-js';
import { etcdMethod, passBytes } from '../etcd/proto';
import type { EncodedEvent } from '../etcd/event-bytes';
import { readWatchResponse } from '../etcd/watch-bytes';
import { toIdentity, toRevision, type WireWatchResponse } from '../etcd/wire';
import type { HeaderIdentity } from '../etcd/records';
import type { Logger } from '../log';
import type { Liveness } from '../upstream/liveness';
import type { UpstreamMember } from '../upstream/pool';
import type { UpstreamLogin } from '../auth/upstream-login';
import { reasonedCall } from '../upstream/call-reason';
import { AuthRefused, isAuthCancelReason } from '../auth/auth-gate';
import { KeyRanges } from '../etcd/key-ranges';
import { RangeWatermark, type ProgressTrust } from './range-watermark';

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

/** While events wait for a range that has said nothing, its progress is asked this often. */
const HELD_PROGRESS_MS = 50;

/**
 * What a watch response delivered for the store: the mirrored events (the
 * gaps between ranges already dropped), the revision the store is complete
 * through after them, and the header they came with.
 */
export interface WatchDelivery {
  readonly events: EncodedEvent[];
  readonly through: number;
  readonly header: HeaderIdentity;
}

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
  const { member, ranges, separate, log } = deps;
  let resolveDone: () => void = () => undefined;
  let rejectDone: (error: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const watch = etcdMethod('etcdserverpb.Watch', 'Watch');
  // Require-leader: etcd ends this watch when its member has had no leader for a few election
  // timeouts, and refuses it while it has none, so the mirror never follows a member cut off.
  const metadata = deps.identity.metadataFor(member);
  metadata.set('hasleader', 'true');
  const call = member.client.makeBidiStreamRequest(watch.path, watch.requestSerialize, passBytes, metadata, reasonedCall('mirror-watch')) as ClientDuplexStream<object, Buffer>;
  deps.onStream(1);
  deps.liveness.used(member);
  const watched = separate ? ranges.ranges : [ranges.watchRange()];
  const watermark = separate ? new RangeWatermark(watched.length, deps.startRevision - 1, deps.trust, Date.now()) : null;
  /** Range index by watch ID, as etcd confirms each create in the order they were sent. */
  const rangeOfWatch = new Map<string, number>();
  let nextCreated = 0;
  let settled = false;
  // A quiet stream is asked for its progress each second: etcd answers on the stream (no RPC, a few
  // bytes), which tells the member is there and has a leader, so liveness need not probe it. Events
  // held for a range that said nothing yet ask sooner.
  let heardAt = Date.now();
  const every = deps.liveness.evidenceIntervalMs;
  const progress = setInterval(() => {
    if (Date.now() - heardAt >= every / 2) call.write({ progress_request: {} });
  }, every);
  progress.unref();
  const heldProgress = watermark === null ? null : setInterval(() => {
    if (watermark.hasHeld()) call.write({ progress_request: {} });
  }, HELD_PROGRESS_MS);
  heldProgress?.unref();

  const finish = (error: Error | null): void => {
    if (settled) return;
    settled = true;
    clearInterval(progress);
    if (heldProgress !== null) clearInterval(heldProgress);
    deps.onStream(-1);
    call.cancel();
    if (error === null) resolveDone();
    else rejectDone(error);
  };

  const onSpanResponse = (response: WireWatchResponse, received: EncodedEvent[]): void => {
    if (received.length === 0) return;
    const through = received.reduce((highest, event) => Math.max(highest, event.kv.mod_revision), 0);
    deps.deliver({ events: ranges.whole ? received : received.filter((event) => ranges.contains(event.kv.key)), through, header: toIdentity(response.header) });
  };

  const onRangeResponse = (merger: RangeWatermark, response: WireWatchResponse, received: EncodedEvent[]): void => {
    const range = rangeOfWatch.get(response.watch_id ?? '0');
    // Events nobody can place would be lost: the stream is given up and resumed from the last commit instead.
    if (received.length > 0 && range === undefined) throw new Error(`mirror watch: events for watch ${response.watch_id ?? '0'}, which the mirror did not create`);
    if (received.length > 0 && range !== undefined) merger.events(range, received);
    else if (received.length === 0 && response.created !== true) {
      const revision = toRevision(response.header?.revision);
      // etcd's answer to a progress request names no watch (-1); a periodic notification names its own.
      if (range !== undefined && response.watch_id !== '-1') merger.watchProgress(range, revision);
      else merger.streamProgress(revision, Date.now());
    }
    const ready = merger.take();
    if (ready !== null) deps.deliver({ events: ready.events, through: ready.through, header: toIdentity(response.header) });
  };

  call.on('data', (bytes: Buffer) => {
    heardAt = Date.now();
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
      const compacted = toRevision(response.compact_revision);
      const reason = response.cancel_reason ?? '';
      if (compacted > 0) finish(new RelistNeeded(compacted));
      else if (isAuthCancelReason(reason)) finish(new AuthRefused(reason));
      else finish(new Error(`upstream cancelled the mirror watch: ${reason === '' ? 'no reason' : reason}`));
      return;
    }
    if (response.created === true) {
      watermark?.expectCatchUp(toRevision(response.header?.revision) - deps.startRevision + 1, Date.now());
      rangeOfWatch.set(response.watch_id ?? '0', nextCreated);
      nextCreated += 1;
      if (nextCreated === watched.length) deps.onCreated();
    }
    try {
      if (watermark === null) onSpanResponse(response, received);
      else onRangeResponse(watermark, response, received);
    } catch (error) {
      log.error({ err: error }, 'mirror could not commit a watch response; reconnecting');
      finish(error instanceof Error ? error : new Error(String(error)));
    }
  });
  call.on('error', (error) => finish(error));
  call.on('end', () => finish(new Error('upstream ended the mirror watch')));
  for (const range of watched) {
    call.write({ create_request: { ...KeyRanges.toRequest(range), start_revision: String(deps.startRevision), prev_kv: true, progress_notify: true } });
  }
  return { done, finish };
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
