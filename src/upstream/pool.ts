import { EventEmitter } from 'node:events';
import { Client, connectivityState, credentials, type ChannelCredentials, type ChannelOptions, type Interceptor } from '@grpc/grpc-js';
import type { Logger } from '../log';
import type { UpstreamEndpoint } from '../etcd/endpoint';
import type { UpstreamKind } from './upstream-kind';

/** One upstream member as the proxy dials it. */
export interface UpstreamMember {
  readonly endpoint: UpstreamEndpoint;
  /** A generic grpc-js client: calls are made by method path with raw bytes. */
  readonly client: Client;
}

/**
 * What the last probe of a member found; `unknown` until its first probe
 * ends. `leaderless`: it answers, but has no leader (it can serve what its
 * store holds, not writes or linearizable reads).
 */
export type MemberHealth = 'healthy' | 'leaderless' | 'unhealthy' | 'unknown';

export interface PoolEvents {
  /** A member stopped answering its probes (or is gone): streams on it should move. */
  unhealthy: [member: UpstreamMember];
  healthy: [member: UpstreamMember];
  /** The member list changed (discovery, refresh, loop guard). */
  changed: [added: readonly UpstreamMember[], removed: readonly UpstreamMember[]];
}

export interface UpstreamPool extends EventEmitter<PoolEvents> {
  /**
   * Members to try for one call, best first: healthy ones (taken in turn, so
   * calls spread over them), then those not probed yet, then leaderless
   * ones, then unhealthy ones (they may be back), each group by connection
   * state.
   */
  candidates(): UpstreamMember[];
  members(): readonly UpstreamMember[];
  health(member: UpstreamMember): MemberHealth;
  /** A probe's verdict on one member. */
  report(member: UpstreamMember, health: Exclude<MemberHealth, 'unknown'>): void;
  /** Whether the member is etcd or another proxy, as its answers last said ('unknown' before any). */
  kind(member: UpstreamMember): UpstreamKind;
  /** What an answer of the member said it is (upstream-kind.ts); 'unknown' says nothing and is ignored. */
  learnKind(member: UpstreamMember, kind: UpstreamKind): void;
  /** Follows a new member list: dials the new members, closes the ones no longer listed. */
  replace(endpoints: readonly UpstreamEndpoint[]): { added: UpstreamMember[]; removed: UpstreamMember[] };
  close(): Promise<void>;
}

// etcd rejects pings more often than every 5 s (--grpc-keepalive-min-time) and
// pings on idle connections, so keepalive stays above that and off when idle.
const KEEPALIVE_TIME_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;
const INITIAL_RECONNECT_BACKOFF_MS = 200;
const MAX_RECONNECT_BACKOFF_MS = 2_000;
/** Calls already under way on a removed member get this long to finish before its channel closes. */
const REMOVED_MEMBER_GRACE_MS = 30_000;

const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.initial_reconnect_backoff_ms': INITIAL_RECONNECT_BACKOFF_MS,
  'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
  // Size limits are etcd's to enforce, so its own error reaches the client.
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc.primary_user_agent': 'etcd-cache-proxy',
  // Nothing reads the proxy's channelz; tracking every upstream call for it costs each read barrier.
  'grpc.enable_channelz': 0,
};

const STATE_RANK: Record<connectivityState, number> = {
  [connectivityState.READY]: 0,
  [connectivityState.CONNECTING]: 1,
  [connectivityState.IDLE]: 2,
  [connectivityState.TRANSIENT_FAILURE]: 3,
  [connectivityState.SHUTDOWN]: 4,
};
const HEALTH_RANK: Record<MemberHealth, number> = { healthy: 0, unknown: 1, leaderless: 2, unhealthy: 3 };

export interface PoolOptions {
  /** Added to every upstream call (the loop guard's via marker). */
  readonly interceptors?: readonly Interceptor[];
  /** Credentials for https members; a 'changed' event re-dials them with the new ones. */
  readonly tls?: { current(): ChannelCredentials; on(event: 'changed', listener: () => void): unknown };
}

/**
 * The upstream members, one gRPC channel each, with the health their probes
 * last found. The member list is replaced as discovery and refreshes learn
 * it; a removed member's channel closes once its calls had time to finish.
 */
export function createUpstreamPool(endpoints: readonly UpstreamEndpoint[], log: Logger, options: PoolOptions = {}): UpstreamPool {
  const emitter = new EventEmitter<PoolEvents>();
  let members: UpstreamMember[] = [];
  const healthOf = new Map<UpstreamMember, MemberHealth>();
  /** etcd or proxy, per member, once one of its answers said so; a member's entry goes with it. */
  const kindOf = new Map<UpstreamMember, Exclude<UpstreamKind, 'unknown'>>();
  const closing = new Set<NodeJS.Timeout>();
  const retired: UpstreamMember[] = [];
  let turn = 0;
  let closed = false;

  const dial = (endpoint: UpstreamEndpoint): UpstreamMember => {
    const channelCredentials = !endpoint.tls ? credentials.createInsecure() : (options.tls?.current() ?? credentials.createSsl());
    const client = new Client(endpoint.target, channelCredentials, { ...CHANNEL_OPTIONS, interceptors: [...(options.interceptors ?? [])] });
    // Dial now, so that a dead member is known before the first call reaches it.
    client.getChannel().getConnectivityState(true);
    return { endpoint, client };
  };
  const retire = (member: UpstreamMember): void => {
    healthOf.delete(member);
    kindOf.delete(member);
    retired.push(member);
    const timer = setTimeout(() => {
      closing.delete(timer);
      retired.splice(retired.indexOf(member), 1);
      member.client.close();
    }, REMOVED_MEMBER_GRACE_MS);
    timer.unref();
    closing.add(timer);
  };

  const replace = (next: readonly UpstreamEndpoint[]): { added: UpstreamMember[]; removed: UpstreamMember[] } => {
    if (closed) return { added: [], removed: [] };
    const wanted = new Map<string, UpstreamEndpoint>();
    for (const endpoint of next) if (!wanted.has(endpoint.url)) wanted.set(endpoint.url, endpoint);
    const removed = members.filter((member) => !wanted.has(member.endpoint.url));
    const kept = members.filter((member) => wanted.has(member.endpoint.url));
    const known = new Set(kept.map((member) => member.endpoint.url));
    const added = [...wanted.values()].filter((endpoint) => !known.has(endpoint.url)).map(dial);
    if (added.length === 0 && removed.length === 0) return { added, removed };
    members = [...kept, ...added];
    for (const member of added) healthOf.set(member, 'unknown');
    for (const member of removed) retire(member);
    log.info({ members: members.map((m) => m.endpoint.url), added: added.map((m) => m.endpoint.url), removed: removed.map((m) => m.endpoint.url) }, 'upstream members changed');
    for (const member of removed) emitter.emit('unhealthy', member);
    emitter.emit('changed', added, removed);
    return { added, removed };
  };
  replace(endpoints);

  // New certificates: https members get new channels; calls already under way finish on the old ones.
  options.tls?.on('changed', () => {
    if (closed) return;
    const renewed = members.filter((member) => member.endpoint.tls);
    if (renewed.length === 0) return;
    const fresh = renewed.map((member) => dial(member.endpoint));
    members = members.map((member) => fresh.find((f) => f.endpoint.url === member.endpoint.url) ?? member);
    for (const member of fresh) healthOf.set(member, 'unknown');
    for (const member of renewed) retire(member);
    log.info({ members: fresh.map((m) => m.endpoint.url) }, 'upstream TLS members re-dialled with the new certificates');
    for (const member of renewed) emitter.emit('unhealthy', member);
    emitter.emit('changed', fresh, renewed);
  });

  return Object.assign(emitter, {
    candidates() {
      turn = (turn + 1) % Math.max(members.length, 1);
      const ranked = members.map((member, order) => ({
        member,
        health: HEALTH_RANK[healthOf.get(member) ?? 'unknown'],
        state: STATE_RANK[member.client.getChannel().getConnectivityState(true)],
        // healthy members take turns at the front; the others keep the configured order
        order: (order - turn + members.length) % members.length,
      }));
      ranked.sort((a, b) => a.health - b.health || a.state - b.state || a.order - b.order);
      return ranked.filter((r) => r.state < STATE_RANK[connectivityState.SHUTDOWN]).map((r) => r.member);
    },
    members: () => members,
    health: (member: UpstreamMember) => healthOf.get(member) ?? 'unhealthy',
    report(member: UpstreamMember, next: Exclude<MemberHealth, 'unknown'>) {
      const previous = healthOf.get(member);
      if (previous === undefined) return; // removed meanwhile
      if (previous === next) return;
      healthOf.set(member, next);
      if (next === 'healthy') {
        if (previous !== 'unknown') log.info({ member: member.endpoint.url }, 'upstream member healthy again');
        emitter.emit('healthy', member);
        return;
      }
      if (previous === 'healthy') log.warn({ member: member.endpoint.url, health: next }, 'upstream member unhealthy');
      emitter.emit('unhealthy', member);
    },
    kind: (member: UpstreamMember) => kindOf.get(member) ?? 'unknown',
    learnKind(member: UpstreamMember, kind: UpstreamKind) {
      if (kind === 'unknown' || !healthOf.has(member)) return; // says nothing, or removed meanwhile
      const previous = kindOf.get(member);
      if (previous === kind) return;
      kindOf.set(member, kind);
      // One line when a member turns out to be a proxy, or changes what it is (a proxy put where etcd was).
      if (kind === 'proxy' || previous !== undefined) log.info({ member: member.endpoint.url, is: kind === 'proxy' ? 'etcd-cache-proxy' : 'etcd' }, 'upstream member identified by its answers');
    },
    replace,
    async close() {
      closed = true;
      for (const timer of closing) clearTimeout(timer);
      for (const member of [...members, ...retired]) member.client.close();
    },
  });
}
