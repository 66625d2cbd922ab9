import { status } from '@grpc/grpc-js';
import { isServiceError } from '../api/errors';
import type { Logger } from '../log';
import type { UpstreamPool } from '../upstream/pool';
import { callUpstream } from '../upstream/unary';

/** How often the upstream is asked whether it still lets an anonymous client read. */
export const AUTH_PROBE_INTERVAL_MS = 5_000;
const PROBE_TIMEOUT_MS = 2_000;
/** Any key: with auth on, etcd refuses an anonymous read of any key before it looks. Serializable: no raft round. */
const PROBE_REQUEST = { key: Buffer.from('etcd-cache-proxy/auth-probe'), count_only: true, serializable: true };

/** What etcd answers an anonymous client once auth is on: gRPC errors, or the reason of a cancelled watch. */
const REFUSAL_MESSAGES = new Set(['etcdserver: user name is empty', 'etcdserver: permission denied', 'etcdserver: invalid auth token']);

/** The upstream refused a call of the proxy's own (which carries no token) for want of credentials. */
export function isAuthRefusal(error: unknown): boolean {
  if (isServiceError(error)) return error.code === status.UNAUTHENTICATED || error.code === status.PERMISSION_DENIED || REFUSAL_MESSAGES.has(error.details);
  return error instanceof AuthRefused;
}

/** A watch etcd cancelled for want of credentials (it says so in cancel_reason, not as a gRPC error). */
export class AuthRefused extends Error {}

export function isAuthCancelReason(reason: string): boolean {
  return REFUSAL_MESSAGES.has(reason);
}

/**
 * Whether the mirror may answer clients. etcd with auth on decides per user
 * what each may read, which the mirror cannot yet (contract section 8), so
 * then every request is forwarded with the client's own token. Auth can be
 * turned on while the proxy runs and its watch, created before, goes on
 * delivering: so besides what the mirror's own calls learn, an anonymous
 * serializable read every few seconds asks. Only a refusal or a success
 * changes the answer; an unreachable upstream leaves it as it was.
 */
export class AuthGate {
  private required = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly log: Logger,
    /** Told of every change (metrics). */
    private readonly onChange: (required: boolean) => void = () => undefined,
  ) {}

  isRequired(): boolean {
    return this.required;
  }

  /** Learns from a failed anonymous call of the proxy's own; failures for other reasons say nothing. */
  observe(error: unknown): void {
    if (isAuthRefusal(error)) this.refused();
  }

  refused(): void {
    if (this.required) return;
    this.required = true;
    this.onChange(true);
    this.log.warn('upstream has auth enabled: the mirror is not used, every request is forwarded');
  }

  accepted(): void {
    if (!this.required) return;
    this.required = false;
    this.onChange(false);
    this.log.info('upstream accepts anonymous reads again: the mirror serves');
    for (const listener of this.listeners) listener();
  }

  /** Called when the upstream accepts anonymous reads again (a refused mirror watch may retry at once). */
  onAccepted(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** Probes every `intervalMs` until close(). */
  startProbing(pool: UpstreamPool, intervalMs = AUTH_PROBE_INTERVAL_MS): void {
    let inFlight = false;
    this.timer = setInterval(() => {
      const member = pool.candidates()[0];
      if (inFlight || member === undefined) return;
      inFlight = true;
      callUpstream(member.client, 'etcdserverpb.KV', 'Range', PROBE_REQUEST, { deadlineMs: PROBE_TIMEOUT_MS }).then(
        () => {
          inFlight = false;
          this.accepted();
        },
        (error: unknown) => {
          inFlight = false;
          this.observe(error);
        },
      );
    }, intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.listeners.clear();
  }
}
