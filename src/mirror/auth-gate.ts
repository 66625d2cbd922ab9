import { status, type Client } from '@grpc/grpc-js';
import { isServiceError } from '../etcd/errors';
import type { Logger } from '../log';
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

/** After an upstream answered AuthStatus with UNIMPLEMENTED (etcd before 3.5), ask it again only after this long (it may be upgraded). */
const AUTH_STATUS_RETRY_MS = 5 * 60_000;

/** Where the probe asks: the first member in line, or none. */
export type ProbeTarget = () => Client | undefined;

/**
 * Whether the mirror may answer clients. etcd with auth on decides per user
 * what each may read, which the mirror cannot yet (contract section 8), so
 * then every request is forwarded with the client's own token. Auth can be
 * turned on while the proxy runs and its watch, created before, goes on
 * delivering: so besides what the mirror's own calls learn, the upstream is
 * asked every few seconds. etcd 3.5+ answers AuthStatus, which tells even
 * when the proxy's own calls are let through as some user (auth by client
 * certificate name); older etcd gets an anonymous serializable read, which
 * auth refuses. Only an answer changes the state; an unreachable upstream
 * leaves it as it was.
 */
export class AuthGate {
  private required = false;
  /** What AuthStatus last said, when the upstream has it: then it alone can say auth is off. */
  private statusSaysEnabled: boolean | null = null;
  private authStatusUnsupportedUntil = 0;
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

  /** One of the proxy's own reads went through. With AuthStatus saying auth is on, that only shows who the proxy is. */
  accepted(): void {
    if (!this.required || this.statusSaysEnabled === true) return;
    this.required = false;
    this.onChange(false);
    this.log.info('upstream accepts anonymous reads again: the mirror serves');
    for (const listener of this.listeners) listener();
  }

  /** Called when the upstream accepts anonymous reads again (a refused mirror watch may retry at once). */
  onAccepted(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** Asks the upstream once; resolves when it has answered or failed. */
  async probe(client: Client): Promise<void> {
    if (Date.now() >= this.authStatusUnsupportedUntil) {
      try {
        const answer = await callUpstream<{ enabled?: boolean }>(client, 'etcdserverpb.Auth', 'AuthStatus', {}, { deadlineMs: PROBE_TIMEOUT_MS });
        this.statusSaysEnabled = answer.enabled === true;
        if (this.statusSaysEnabled) this.refused();
        else this.accepted();
        return;
      } catch (error) {
        if (!isServiceError(error) || error.code !== status.UNIMPLEMENTED) {
          this.observe(error);
          return;
        }
        this.statusSaysEnabled = null;
        this.authStatusUnsupportedUntil = Date.now() + AUTH_STATUS_RETRY_MS;
      }
    }
    try {
      await callUpstream(client, 'etcdserverpb.KV', 'Range', PROBE_REQUEST, { deadlineMs: PROBE_TIMEOUT_MS });
      this.accepted();
    } catch (error) {
      this.observe(error);
    }
  }

  /** Probes every `intervalMs` until close(). */
  startProbing(target: ProbeTarget, intervalMs = AUTH_PROBE_INTERVAL_MS): void {
    let inFlight = false;
    this.timer = setInterval(() => {
      const client = target();
      if (inFlight || client === undefined) return;
      inFlight = true;
      void this.probe(client).finally(() => {
        inFlight = false;
      });
    }, intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.listeners.clear();
  }
}
