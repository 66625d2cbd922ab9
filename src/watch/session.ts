import type { Metadata } from '@grpc/grpc-js';
import type { KeyRangeAsked, ReadDecision } from '../auth/directory';
import { ETCD_ERRORS, cancelReasonOf } from '../etcd/errors';
import type { GrayscaleView } from '../grayscale/view';
import { mirrorHeader, mirrorHeaderBytes } from '../mirror/response-header';
import { etcdMethod } from '../etcd/proto';
import type { WireWatchResponse } from '../etcd/wire';
import type { EncodedEvent } from '../etcd/event-bytes';
import { batchMessages } from '../etcd/grpc-frame';
import { encodeWatchEvents, encodeWatchResponseHead, watchEventSize } from '../etcd/watch-bytes';
import type { Mirror } from '../mirror/mirror';
import type { RangeQueries } from '../mirror/mirror-scope';
import type { MirrorStore } from '../store/store';
import { fragmentGroups } from './fragment';
import { oldestWatchable, type HubWatcher, type WatchHub, type WatchSink } from './hub';
import type { RelayHandle } from './shared-watch';
import { relayKind, type RelayKind, type WatchRelay } from './watch-relay';
import { specRange, toWatchSpec, type WatchSpec, type WireWatchCreateRequest } from './watch-spec';

const watchMethod = etcdMethod('etcdserverpb.Watch', 'Watch');

/** Below this many bytes waiting for the client, a catching-up watcher may read more history. */
const CATCH_UP_BACKLOG_BYTES = 1024 * 1024;
const DUPLICATE_ID = 'mvcc: duplicate watch ID provided on the WatchStream';

interface WireWatchRequest {
  create_request?: WireWatchCreateRequest;
  cancel_request?: { watch_id?: string };
  progress_request?: object;
}

/**
 * Encoded `events` fields, per event list the hub handed out (one list is
 * shared by every watcher owed it) and prev_kv choice: the stored events'
 * bytes behind their tags, put together once for all those watchers.
 */
const encodedEventLists = new WeakMap<readonly EncodedEvent[], { plain?: Buffer; withPrev?: Buffer }>();

function encodedEvents(events: readonly EncodedEvent[], prevKv: boolean): Buffer {
  let cached = encodedEventLists.get(events);
  if (cached === undefined) {
    cached = {};
    encodedEventLists.set(events, cached);
  }
  const slot = prevKv ? 'withPrev' : 'plain';
  cached[slot] ??= encodeWatchEvents(events, prevKv);
  return cached[slot];
}

/** The downstream stream, whichever transport carries it (the core's DuplexCall has this shape). */
export interface WatchStream {
  readonly metadata: Metadata;
  /** `done` runs once the message has left: what is still waiting counts against the buffer bound. */
  write(message: Buffer, done?: () => void): boolean;
}

/** What every downstream Watch stream is served from. */
export interface WatchSessionDeps {
  readonly hub: WatchHub;
  readonly store: MirrorStore;
  readonly mirror: Mirror;
  readonly ranges: RangeQueries;
  /** This machine's view under grayscale prefixes: watches there are never relayed to etcd (null: off). */
  readonly grayscale: GrayscaleView;
  /** The process-wide relay for watches the mirror cannot serve. */
  readonly relay: WatchRelay;
  /** No member answers at all: history older than the log has nobody to replay it. */
  readonly upstreamSilent: () => boolean;
  /** Whether etcd may have compacted past `revision` (true), holds it (false), or did not say (undefined). */
  readonly mayBeCompacted: (revision: number) => Promise<boolean | undefined>;
  /** With auth on: whether the caller (by its stream's metadata) may watch a key range, as etcd decides it. */
  readonly permission: (metadata: Metadata, range: KeyRangeAsked) => Promise<ReadDecision>;
  /** Bytes a stream may have waiting for its client before its watchers are cancelled as too slow. */
  readonly bufferBytes: number;
  readonly upstreamMetadata: (downstream: Metadata) => Metadata;
  readonly metrics: {
    eventsSent(count: number): void;
    slowCancelled(watchers: number): void;
    watchers(source: 'mirror' | 'upstream', delta: number): void;
  };
}

/** How long a watch created before the mirror's first sync waits for it before it is relayed to etcd. */
const FIRST_SYNC_WAIT_MS = 3_000;
/** How long a progress request waits for every watch of its stream to catch up before it goes unanswered. */
const PROGRESS_WAIT_MS = 5_000;

type Entry =
  | { kind: 'hub'; watcher: HubWatcher | null; progressNotify: boolean; quietSinceTick: boolean }
  /**
   * `relayed` is null only while the relay is still taking it (it may answer before it returns);
   * `through`: the revision etcd has sent it every event up to (its last event, or a progress notification).
   */
  | { kind: 'forwarded'; relayed: RelayHandle | null; through: number }
  /** Waiting for etcd to say whether it still holds the history the watch starts in. */
  | { kind: 'checking' };

/**
 * One downstream Watch stream: many watches multiplexed by watch ID, as etcd
 * serves them. Watches the mirror covers are served by the hub; others are
 * relayed upstream. The stream never sends a message etcd would not: created,
 * events, canceled, and the progress replies the client asked for.
 */
export class WatchSession {
  private readonly entries = new Map<number, Entry>();
  private readonly idOf = new Map<HubWatcher, number>();
  /** Messages held behind a relayed create whose answer has not come back yet (null: its place). */
  private readonly outbox: { bytes: Buffer | null; createdFor?: number }[] = [];
  private nextAutoId = 0;
  /** Bytes written to the stream or about to be, that the client has not taken yet. */
  private waitingBytes = 0;
  /** Messages made in this turn, written together at its end. */
  private unsent: Buffer[] = [];
  private unsentBytes = 0;
  private flushScheduled = false;
  private closed = false;
  /** The progress request waiting for every watch to catch up (etcd answers one at a time per stream), null: none. */
  private progressPending: { readonly check: () => void } | null = null;
  private progressCheckQueued = false;
  /** The highest header revision sent on this stream so far. */
  private headerSent = 0;
  /** Relayed watches may share upstream streams only with streams of the same kind. */
  private readonly relayKind: RelayKind;
  private readonly sink: WatchSink;

  constructor(
    private readonly call: WatchStream,
    private readonly deps: WatchSessionDeps,
  ) {
    this.relayKind = relayKind(deps.upstreamMetadata(call.metadata));
    this.sink = {
      events: (watcher, revision, events) => this.sendEvents(watcher, revision, events),
      compacted: (watcher, compactRevision) => this.sendCompacted(watcher, compactRevision),
      writable: () => !this.closed && this.waitingBytes < CATCH_UP_BACKLOG_BYTES,
    };
  }

  receive(message: Buffer): void {
    let request: WireWatchRequest;
    try {
      request = watchMethod.requestDeserialize(message) as WireWatchRequest;
    } catch {
      return; // etcd ignores what it cannot read, too
    }
    if (request.create_request !== undefined) this.create(request.create_request);
    else if (request.cancel_request !== undefined) this.cancel(Number(request.cancel_request.watch_id ?? '0'));
    else if (request.progress_request !== undefined) this.requestProgress();
  }

  /** The periodic progress notification (etcd's progress_notify): to watches that got nothing since the last tick. */
  tick(): void {
    for (const [id, entry] of this.entries) {
      if (entry.kind !== 'hub' || !entry.progressNotify || entry.watcher === null) continue;
      if (entry.quietSinceTick && entry.watcher.synced) this.send({ header: this.header(this.deliveredThrough(entry.watcher)), watch_id: String(id) });
      entry.quietSinceTick = true;
    }
  }

  /** Ends every watch of this stream (client gone, or the stream is being closed). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.entries.values()) this.release(entry);
    this.entries.clear();
  }

  /**
   * The revision a synced watcher has every event up to: the mirror's (each
   * commit is fanned out as it is made), or further when it caught up from
   * the log past it (a serving process of --workers reads commits the
   * primary has not told it of yet). A progress answer names no more.
   */
  private deliveredThrough(watcher: HubWatcher): number {
    return Math.max(this.deps.mirror.revision(), watcher.nextRevision - 1);
  }

  private header(revision?: number): object {
    const header = mirrorHeader(this.deps.store.meta()) as Record<string, unknown>;
    return revision === undefined ? header : { ...header, revision };
  }

  private create(request: WireWatchCreateRequest): void {
    const spec = toWatchSpec(request);
    const requested = Number(request.watch_id ?? '0');
    let error = 'error' in spec ? spec.error : null;
    if (error === null && requested !== 0 && this.entries.has(requested)) error = DUPLICATE_ID;
    if (error !== null || 'error' in spec) {
      this.send({ header: this.header(), watch_id: '-1', created: true, canceled: true, cancel_reason: error ?? undefined });
      return;
    }
    const id = requested !== 0 ? requested : this.autoId();
    this.place(id, spec, request, requested === 0, false);
  }

  /**
   * Decides where a new watch is served: the hub, or etcd through the relay, or (refused) nowhere.
   * `placeKept`: its created answer already has its place in the outbox (the watch waited for something).
   */
  private place(id: number, spec: WatchSpec, request: WireWatchCreateRequest, autoAssigned: boolean, placeKept: boolean): void {
    const meta = this.deps.store.meta();
    const silent = this.deps.upstreamSilent();
    const { key, rangeEnd } = specRange(spec);
    const covered = !this.deps.mirror.authRequired() && this.deps.ranges.coversRequest(key, rangeEnd);
    // Before the mirror's first sync (a proxy started moments ago on an empty data dir), a watch it will
    // mirror waits for that sync, a bounded while: relayed, it would stay on etcd for its whole life.
    if (meta.revision === 0 && covered && !silent && !placeKept) {
      const waiting: Entry = { kind: 'checking' };
      this.entries.set(id, waiting);
      this.outbox.push({ bytes: null, createdFor: id });
      void this.deps.mirror.waitForRevision(1, FIRST_SYNC_WAIT_MS).then(() => {
        if (this.closed || this.entries.get(id) !== waiting) return;
        this.entries.delete(id);
        this.place(id, spec, request, autoAssigned, true);
      });
      return;
    }
    // History older than the log is etcd's to replay (or to refuse as compacted) while a member answers,
    // with a leader or without (etcd serves a watch from the member's own store).
    const tooOld = spec.startRevision > 0 && spec.startRevision < oldestWatchable(meta) && !silent;
    const servable = !tooOld && meta.revision > 0 && covered;
    if (!servable) {
      // etcd would send versions this machine withholds: such a watch is this machine's or nobody's.
      if (covered && this.deps.grayscale.touches(key, rangeEnd)) {
        if (meta.revision === 0) {
          const unsynced = { header: this.header(), watch_id: '-1', created: true, canceled: true, cancel_reason: ETCD_ERRORS.grayscaleUnsynced.details };
          if (placeKept) this.answerCreate(id, unsynced);
          else this.send(unsynced);
        } else this.serveFromHub(id, spec, placeKept); // older than the log: cancelled as compacted at the log's start
        return;
      }
      this.relayUpstream(id, spec, request, placeKept);
      return;
    }
    // With auth on, etcd first decides whether the stream's user may watch the range.
    const needsPermission = this.deps.mirror.authEnabled();
    // A replay from the log, unless etcd has compacted past its start since the proxy last heard
    // (a compaction made elsewhere reaches no watch): then etcd answers it, with its compact revision.
    const needsHistory = !silent && spec.startRevision !== 0 && spec.startRevision <= meta.revision;
    if (!needsPermission && !needsHistory) {
      this.serveFromHub(id, spec, placeKept);
      return;
    }
    const checking: Entry = { kind: 'checking' };
    this.entries.set(id, checking);
    if (!placeKept) this.outbox.push({ bytes: null, createdFor: id });
    void this.checkThenServe(id, spec, request, checking, needsPermission, needsHistory, autoAssigned);
  }

  /** The checks a watch waits for before the hub serves it; either may hand it to etcd or refuse it instead. */
  private async checkThenServe(
    id: number,
    spec: WatchSpec,
    request: WireWatchCreateRequest,
    checking: Entry,
    needsPermission: boolean,
    needsHistory: boolean,
    autoAssigned: boolean,
  ): Promise<void> {
    const stillWaiting = (): boolean => !this.closed && this.entries.get(id) === checking;
    if (needsPermission) {
      const permission = await this.deps.permission(this.call.metadata, { key: request.key ?? Buffer.alloc(0), rangeEnd: request.range_end ?? Buffer.alloc(0) });
      if (!stillWaiting()) return;
      if (permission.kind === 'forward') {
        this.entries.delete(id);
        this.relayUpstream(id, spec, request, true);
        return;
      }
      if (permission.kind === 'refuse') {
        this.entries.delete(id);
        // etcd refuses before it assigns an ID: the next automatic one is this one again.
        if (autoAssigned && this.nextAutoId === id + 1) this.nextAutoId = id;
        this.answerCreate(id, { header: this.header(), watch_id: '-1', created: true, canceled: true, cancel_reason: cancelReasonOf(permission.error) });
        return;
      }
    }
    const mayBeCompacted = needsHistory ? await this.deps.mayBeCompacted(spec.startRevision) : false;
    if (!stillWaiting()) return;
    this.entries.delete(id);
    if (mayBeCompacted === true) this.relayUpstream(id, spec, request, true);
    else this.serveFromHub(id, spec, true);
  }

  /**
   * Relays the watch to etcd. Its created answer comes through the relay (at once if it joins a watch
   * etcd already answered, else when etcd answers); whatever this stream sends meanwhile waits behind it,
   * as etcd would order it. `placeKept`: the place for that answer is already in the outbox.
   */
  private relayUpstream(id: number, spec: WatchSpec, request: WireWatchCreateRequest, placeKept = false): void {
    this.deps.metrics.watchers('upstream', 1);
    const forwarded: Entry = { kind: 'forwarded', relayed: null, through: spec.startRevision - 1 };
    this.entries.set(id, forwarded);
    if (!placeKept) this.outbox.push({ bytes: null, createdFor: id });
    forwarded.relayed = this.deps.relay.watch(this.relayKind, spec, request, {
      deliver: (response) => this.relay(id, forwarded, response),
      broken: (reason) => {
        if (this.entries.get(id) === forwarded) this.cancelWith(id, reason);
      },
      caughtUp: () => this.progressHeard(),
    });
  }

  /** Serves the watch from the hub; `placeKept`: its created answer takes the place kept for it in the outbox. */
  private serveFromHub(id: number, spec: WatchSpec, placeKept = false): void {
    this.deps.metrics.watchers('mirror', 1);
    const entry: Entry = { kind: 'hub', watcher: null, progressNotify: spec.progressNotify, quietSinceTick: true };
    this.entries.set(id, entry);
    const created = { header: this.header(), watch_id: String(id), created: true };
    if (!placeKept || !this.answerCreate(id, created)) this.send(created);
    const added = this.deps.hub.add(spec, this.sink);
    if ('compactRevision' in added) {
      this.entries.delete(id);
      this.deps.metrics.watchers('mirror', -1);
      // etcd's compacted answer carries an empty header revision.
      this.send({ header: { ...this.header(), revision: 0 }, watch_id: String(id), canceled: true, compact_revision: String(added.compactRevision) });
      return;
    }
    entry.watcher = added;
    this.idOf.set(added, id);
  }

  private autoId(): number {
    while (this.entries.has(this.nextAutoId)) this.nextAutoId += 1;
    const id = this.nextAutoId;
    this.nextAutoId += 1;
    return id;
  }

  private cancel(id: number): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return; // etcd answers nothing for an unknown ID
    this.entries.delete(id);
    this.release(entry);
    if (entry.kind === 'checking') this.answerCreate(id, { header: this.header(), watch_id: String(id), created: true });
    this.send({ header: this.header(), watch_id: String(id), canceled: true });
  }

  private release(entry: Entry): void {
    if (entry.kind === 'checking') return; // counted nowhere yet
    this.deps.metrics.watchers(entry.kind === 'hub' ? 'mirror' : 'upstream', -1);
    if (entry.kind === 'hub' && entry.watcher !== null) {
      this.deps.hub.remove(entry.watcher);
      this.idOf.delete(entry.watcher);
    }
    if (entry.kind === 'forwarded') entry.relayed?.cancel();
  }

  private cancelWith(id: number, reason: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.entries.delete(id);
    this.release(entry);
    const response = { header: this.header(), watch_id: String(id), canceled: true, cancel_reason: reason };
    if (!this.answerCreate(id, response)) this.send(response, true);
  }

  /**
   * Answered once every watch of the stream has caught up, so the revision it
   * names is a promise kept: every watch made (none still being checked
   * against etcd), the hub's synced, and each watch sent its events up to
   * it. The answer names the revision every watch has caught up to, never
   * below a header the stream sent nor below where the hub's watches were
   * when it was asked. A relayed watch shows it caught up that far by its
   * events, or else (a quiet range) by etcd's answer to a progress request
   * the relay makes after this one on the upstream stream the watch rides:
   * etcd answers once that stream's watchers are synced, at its revision of
   * the moment (one request serves every client waiting). Without one (the
   * upstream is down) the request goes unanswered after PROGRESS_WAIT_MS, as
   * etcd leaves one unanswered while its watchers catch up.
   */
  private requestProgress(): void {
    if (this.progressPending !== null) return;
    const askedAt = performance.now();
    const giveUpAt = askedAt + PROGRESS_WAIT_MS;
    const hubAtRequest = this.hubThrough();
    const floor = hubAtRequest.length > 0 ? Math.max(...hubAtRequest) : this.deps.mirror.revision();
    let timer: NodeJS.Timeout | null = null;
    const pending = { check: (): void => answer() };
    this.progressPending = pending;
    const answer = (): void => {
      if (this.closed || this.progressPending !== pending) return;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      const entries = [...this.entries.values()];
      const watchers = entries.flatMap((e) => (e.kind === 'hub' && e.watcher !== null ? [e.watcher] : []));
      const relayed = entries.flatMap((e) => (e.kind === 'forwarded' ? [e] : []));
      // Never lower than a header this stream already sent: etcd's revisions do not go back on a stream.
      const target = Math.max(this.headerSent, floor);
      const behind = relayed.filter((e) => !this.relayedCaughtUp(e, target, askedAt));
      for (const e of behind) e.relayed?.askProgress();
      const through = [...this.hubThrough(), ...relayed.map((e) => this.relayedThrough(e))];
      const making = entries.some((e) => e.kind === 'checking');
      if (making || behind.length > 0 || watchers.some((watcher) => !watcher.synced) || Math.min(...through) < target) {
        if (performance.now() < giveUpAt) timer = setTimeout(answer, 10);
        else this.progressPending = null;
        return;
      }
      this.progressPending = null;
      this.send({ header: this.header(through.length > 0 ? Math.min(...through) : target), watch_id: '-1' });
    };
    answer();
  }

  /**
   * etcd answered a progress request for a relayed watch of this stream: a
   * waiting progress request is looked at again at once (its hub watches'
   * headers may move past etcd's answer if it waits for its next turn), once
   * every watch that answer speaks for has heard it.
   */
  private progressHeard(): void {
    if (this.progressPending === null || this.progressCheckQueued) return;
    this.progressCheckQueued = true;
    queueMicrotask(() => {
      this.progressCheckQueued = false;
      this.progressPending?.check();
    });
  }

  /** What each of the hub's watchers of this stream has been sent every event up to. */
  private hubThrough(): number[] {
    const through: number[] = [];
    for (const entry of this.entries.values()) if (entry.kind === 'hub' && entry.watcher !== null) through.push(this.deliveredThrough(entry.watcher));
    return through;
  }

  /** A relayed watch has every event up to its last one (or its start), or etcd's last progress word for it, whichever is higher. */
  private relayedThrough(entry: Extract<Entry, { kind: 'forwarded' }>): number {
    return Math.max(entry.through, entry.relayed?.through() ?? -1, entry.relayed?.caughtUp()?.revision ?? -1);
  }

  /**
   * Whether a relayed watch has caught up to `target` for a progress request
   * made at `askedAt`: by its events, or by an answer of etcd's to a request
   * made since (an older one may name a revision long past).
   */
  private relayedCaughtUp(entry: Extract<Entry, { kind: 'forwarded' }>, target: number, askedAt: number): boolean {
    if (Math.max(entry.through, entry.relayed?.through() ?? -1) >= target) return true;
    const answer = entry.relayed?.caughtUp();
    return answer != null && answer.askedAt >= askedAt && answer.revision >= target;
  }

  private sendEvents(watcher: HubWatcher, revision: number, events: readonly EncodedEvent[]): void {
    const id = this.idOf.get(watcher);
    const entry = id === undefined ? undefined : this.entries.get(id);
    if (id === undefined || entry === undefined || entry.kind !== 'hub') return;
    entry.quietSinceTick = false;
    if (revision > this.headerSent) this.headerSent = revision;
    const header = mirrorHeaderBytes(this.deps.store.meta(), revision);
    const prevKv = watcher.spec.prevKv;
    if (!watcher.spec.fragment) {
      // A protobuf message may be sent in parts: this watcher's header and ID, then the events, encoded once for every watcher given the same ones.
      this.sendEncoded(Buffer.concat([encodeWatchResponseHead(header, id, false), encodedEvents(events, prevKv)]));
    } else {
      const groups = fragmentGroups(events, (event) => watchEventSize(event, prevKv), encodeWatchResponseHead(header, id, false).length);
      groups.forEach((group, index) => {
        const last = index === groups.length - 1;
        this.sendEncoded(Buffer.concat([encodeWatchResponseHead(header, id, !last), encodeWatchEvents(group, prevKv)]));
      });
    }
    this.deps.metrics.eventsSent(events.length);
  }

  private sendCompacted(watcher: HubWatcher, compactRevision: number): void {
    const id = this.idOf.get(watcher);
    if (id === undefined) return;
    const entry = this.entries.get(id);
    this.idOf.delete(watcher);
    this.entries.delete(id);
    if (entry !== undefined) this.deps.metrics.watchers('mirror', -1);
    this.send({ header: { ...this.header(), revision: 0 }, watch_id: String(id), canceled: true, compact_revision: String(compactRevision) });
  }

  private send(response: object, evenIfSlow = false): void {
    if (this.closed) return;
    this.noteHeader(response);
    this.sendEncoded(watchMethod.responseSerialize(response), evenIfSlow);
  }

  /** The highest header revision this stream has sent (or queued): a progress answer names no lower one. */
  private noteHeader(response: object): void {
    const revision = Number((response as { header?: { revision?: unknown } }).header?.revision ?? 0);
    if (revision > this.headerSent) this.headerSent = revision;
  }

  private sendEncoded(bytes: Buffer, evenIfSlow = false): void {
    if (this.closed) return;
    if (this.outbox.length > 0) this.outbox.push({ bytes });
    else this.write(bytes, evenIfSlow);
  }

  /** The first answer for a relayed create: it takes the place kept for it, and what waited behind it goes out. */
  private answerCreate(id: number, response: object): boolean {
    const slot = this.outbox.find((s) => s.bytes === null && s.createdFor === id);
    if (slot === undefined) return false;
    this.noteHeader(response);
    slot.bytes = watchMethod.responseSerialize(response);
    while (this.outbox[0]?.bytes != null && !this.closed) {
      const next = this.outbox.shift();
      if (next?.bytes != null) this.write(next.bytes, false);
    }
    return true;
  }

  /**
   * Messages go out together at the end of the turn that made them: one
   * event fanned out to the many watchers of a stream is one write, not one
   * per watcher (see batchMessages).
   */
  private write(bytes: Buffer, evenIfSlow: boolean): void {
    this.waitingBytes += bytes.length;
    this.unsent.push(bytes);
    this.unsentBytes += bytes.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
    if (!evenIfSlow && this.waitingBytes > this.deps.bufferBytes) this.cancelSlow();
  }

  private flush(): void {
    this.flushScheduled = false;
    const messages = this.unsent;
    const bytes = this.unsentBytes;
    this.unsent = [];
    this.unsentBytes = 0;
    if (messages.length === 0) return;
    if (this.closed) {
      this.waitingBytes -= bytes;
      return;
    }
    const first = messages[0];
    const message = messages.length === 1 && first !== undefined ? first : batchMessages(messages);
    this.call.write(message, () => {
      this.waitingBytes -= bytes;
      if (this.waitingBytes < CATCH_UP_BACKLOG_BYTES) this.deps.hub.resume();
    });
  }

  /** The client stopped reading: its watches end here rather than hold memory without bound or slow anyone else. */
  private cancelSlow(): void {
    const ids = [...this.entries.keys()];
    const reason = `etcd-cache-proxy: watcher too slow: more than ${this.deps.bufferBytes} bytes waiting for the client`;
    for (const id of ids) this.cancelWith(id, reason);
    if (ids.length > 0) this.deps.metrics.slowCancelled(ids.length);
  }

  /** A relayed watch's response, given this stream's ID for it; a cancel ends the entry here too. */
  private relay(id: number, entry: Entry, upstream: WireWatchResponse): void {
    if (this.entries.get(id) !== entry) return; // cancelled here meanwhile (and its ID perhaps taken again)
    // etcd refused the create (auth): its answer names no watch (-1), and no ID was taken.
    const refused = upstream.created === true && upstream.canceled === true && upstream.watch_id === '-1';
    // The relay's own refusal (a token etcd holds rather than refuse) names no header: this stream's is etcd's latest.
    const headed = upstream.header === undefined ? { ...upstream, header: this.header() } : upstream;
    const response = refused ? headed : { ...headed, watch_id: String(id) };
    if (response.canceled === true) {
      this.entries.delete(id);
      this.release(entry);
    } else if (response.created !== true && entry.kind === 'forwarded') {
      const events = upstream.events ?? [];
      const last = events.length > 0 ? Number(events[events.length - 1]?.kv?.mod_revision ?? 0) : Number(upstream.header?.revision ?? 0);
      entry.through = Math.max(entry.through, last);
    }
    if (response.created !== true || !this.answerCreate(id, response)) this.send(response);
  }
}
