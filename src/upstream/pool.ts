import { Client, connectivityState, credentials, type ChannelOptions } from '@grpc/grpc-js';
import type { Logger } from '../log';
import type { UpstreamEndpoint } from './endpoint';

/** One upstream member as the proxy dials it. */
export interface UpstreamMember {
  readonly endpoint: UpstreamEndpoint;
  /** A generic grpc-js client: calls are made by method path with raw bytes. */
  readonly client: Client;
}

export interface UpstreamPool {
  /**
   * Members to try for one call, best first: connected ones, then those
   * still connecting or idle, then those that failed last (they may be back).
   */
  candidates(): UpstreamMember[];
  close(): Promise<void>;
}

// etcd rejects pings more often than every 5 s (--grpc-keepalive-min-time) and
// pings on idle connections, so keepalive stays above that and off when idle.
const KEEPALIVE_TIME_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;
const INITIAL_RECONNECT_BACKOFF_MS = 200;
const MAX_RECONNECT_BACKOFF_MS = 2_000;

const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.initial_reconnect_backoff_ms': INITIAL_RECONNECT_BACKOFF_MS,
  'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
  // Size limits are etcd's to enforce, so its own error reaches the client.
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc.primary_user_agent': 'etcd-cache-proxy',
};

const STATE_RANK: Record<connectivityState, number> = {
  [connectivityState.READY]: 0,
  [connectivityState.CONNECTING]: 1,
  [connectivityState.IDLE]: 2,
  [connectivityState.TRANSIENT_FAILURE]: 3,
  [connectivityState.SHUTDOWN]: 4,
};

/**
 * A static pool over the configured endpoints, one channel each. Discovery,
 * periodic refresh and per-member health replace the ordering heuristic here
 * when membership is built (see the README's roadmap).
 */
export function createUpstreamPool(endpoints: readonly UpstreamEndpoint[], log: Logger): UpstreamPool {
  const members: UpstreamMember[] = endpoints.map((endpoint) => ({
    endpoint,
    client: new Client(endpoint.target, credentials.createInsecure(), CHANNEL_OPTIONS),
  }));
  // Dial every member now, so that a dead one is known before the first call reaches it.
  for (const member of members) member.client.getChannel().getConnectivityState(true);
  log.info({ endpoints: endpoints.map((e) => e.url) }, 'upstream endpoints configured');

  return {
    candidates() {
      const ranked = members.map((member, order) => ({
        member,
        order,
        rank: STATE_RANK[member.client.getChannel().getConnectivityState(true)],
      }));
      ranked.sort((a, b) => a.rank - b.rank || a.order - b.order);
      return ranked.filter((r) => r.rank < STATE_RANK[connectivityState.SHUTDOWN]).map((r) => r.member);
    },
    async close() {
      for (const member of members) member.client.close();
    },
  };
}
