import { status, type Client } from '@grpc/grpc-js';
import { cancelReasonMessage, isServiceError } from '../etcd/errors';
import type { Logger } from '../log';
import { callUpstream } from '../upstream/unary';
import type { PersistedAuthState } from '../store/store';

/** How often, at most, the upstream is asked whether it still lets an anonymous client read. */
export const AUTH_PROBE_INTERVAL_MS = 5_000;
/** With auth on, how often it is asked whether auth is still on (learning it late costs nothing). */
const AUTH_ON_PROBE_INTERVAL_MS = 60_000;
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
export class AuthRefused extends Error {
  constructor(
    /** etcd's cancel_reason. */
    readonly reason: string,
  ) {
    super(`upstream refused the mirror watch: ${reason}`);
  }

  /** The error's message, as a gRPC error would carry it. */
  get details(): string {
    return cancelReasonMessage(this.reason);
  }
}

export function isAuthCancelReason(reason: string): boolean {
  return REFUSAL_MESSAGES.has(cancelReasonMessage(reason));
}

/** After an upstream answered AuthStatus with UNIMPLEMENTED (etcd before 3.5), ask it again only after this long (it may be upgraded). */
const AUTH_STATUS_RETRY_MS = 5 * 60_000;

/** Where the probe asks: the first member in line, or none. */
export type ProbeTarget = () => Client | undefined;

/**
 * Whether the mirror may answer clients, and whether it must ask first who
 * is asking. etcd with auth on decides per user what each may read. Without
 * an identity of its own (`--user`) the mirror cannot follow etcd then, and
 * every request is forwarded with the client's own token, so that etcd
 * decides. With one, the mirror follows etcd as that user, holds what that
 * user may read (mirror/mirror-scope.ts) and serves each client what etcd would
 * serve it (auth/). Auth can be turned on while the proxy runs
 * and its watch, created before, goes on delivering: so besides what the
 * mirror's own calls and the logins passing through teach, the upstream is
 * asked every few seconds, anonymously. etcd 3.5+ answers AuthStatus; older
 * etcd gets an anonymous serializable read, which auth refuses. Only an
 * answer changes the state; an unreachable upstream leaves it as it was.
 */
/** What the gate believes, as one serving process tells another (workers/). */
export interface AuthState {
  readonly enabled: boolean;
  readonly mirrorAllowed: boolean;
  /** etcd's auth revision as last learned (AuthStatus, or a JWT etcd refused as old); 0 when not known. */
  readonly authRevision: number;
}

/** Where the gate keeps what etcd last said of its auth (the store), so a restart during an outage starts from it. */
export interface AuthMemory {
  load(): PersistedAuthState | null;
  save(state: PersistedAuthState): void;
}

/** What a serving process learns about auth from the calls it sees, for the process that keeps the mirror. */
export type AuthSignal = 'refused' | 'loginSeen' | 'served';

export class AuthGate {
  /** Auth is on upstream; with an identity, assumed until a login or a probe says otherwise. */
  private enabled: boolean;
  /** With an identity: the mirror's own calls, made as that user, are let through. */
  private mirrorAllowed = true;
  /** What AuthStatus last said, when the upstream has it: then it alone can say auth is off. */
  private statusSaysEnabled: boolean | null = null;
  private authStatusUnsupportedUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly stateListeners = new Set<(state: AuthState) => void>();
  /** The mirror served something (a read, a watch event) since the last probe; true at first, to probe at once. */
  private served = true;
  private lastProbeAt = 0;
  /** When 'served' was last told to the gate that probes. */
  private servedToldAt = 0;
  /** etcd's auth revision as AuthStatus last told it (etcd 3.5+); 0 when not known. */
  private authRevision = 0;

  constructor(
    private readonly log: Logger,
    /** Told of every change of isRequired() (metrics). */
    private readonly onChange: (required: boolean) => void = () => undefined,
    /** The mirror's own calls are made as a user of their own (`--user`). */
    private readonly hasIdentity = false,
    /** Told of what clients' calls teach (a worker's gate tells the mirror's). */
    private readonly onSignal: (signal: AuthSignal) => void = () => undefined,
    /** What etcd last said, kept across restarts; null: nothing kept (tests, tools). */
    private readonly memory: AuthMemory | null = null,
  ) {
    // Its calls go through either way, so nothing the mirror does tells auth is on: until a login or a
    // probe answers, every read from the mirror gets a permission decision rather than none. Without
    // an identity, what etcd said before a restart holds until it answers again: a proxy restarted
    // during an outage refuses (by forwarding, which fails) what etcd refused, rather than serving all.
    const remembered = memory?.load() ?? null;
    this.enabled = hasIdentity || remembered?.enabled === true;
    this.authRevision = remembered?.authRevision ?? 0;
    if (remembered?.enabled === true && !hasIdentity) {
      log.warn('etcd had auth on when last heard, and the mirror has no user of its own (--user): every request is forwarded until etcd says otherwise');
    }
  }

  /** The mirror cannot serve anyone: auth is on, and the mirror has no identity etcd lets read. */
  isRequired(): boolean {
    return this.enabled && !(this.hasIdentity && this.mirrorAllowed);
  }

  /** Auth is on upstream: whatever the mirror serves needs a permission decision for the client. */
  isEnabled(): boolean {
    return this.enabled;
  }

  /** The mirror served a client: the next probe is due (auth turned on meanwhile must not go unnoticed for long). */
  noteServed(): void {
    // A gate that does not probe (a worker's: its `served` is never reset) tells the one that does,
    // at most once per probe interval; before, it told once in its life, and auth turned on after
    // the first probe went unnoticed while workers served every read.
    const now = Date.now();
    if (!this.served || (this.timer === null && now - this.servedToldAt >= AUTH_PROBE_INTERVAL_MS)) {
      this.servedToldAt = now;
      this.onSignal('served');
    }
    this.served = true;
  }

  /** Learns from a failed call of the proxy's own; failures for other reasons say nothing. */
  observe(error: unknown): void {
    if (isAuthRefusal(error)) this.refused();
  }

  /** A call of the proxy's own was refused for want of credentials (or, made as its user, of permission). */
  refused(): void {
    this.onSignal('refused');
    this.change(() => {
      this.enabled = true;
      if (this.hasIdentity) this.mirrorAllowed = false;
    });
  }

  /** One of the proxy's own reads went through: auth is off, or (with an identity) the mirror's user may read. */
  accepted(): void {
    this.change(() => {
      if (this.hasIdentity) this.mirrorAllowed = true;
      else if (this.statusSaysEnabled !== true) this.enabled = false;
    });
  }

  /** A login succeeded (a client's through the proxy, or the mirror's own): auth is on. */
  loginSeen(): void {
    this.onSignal('loginSeen');
    this.change(() => {
      this.enabled = true;
    });
  }

  /** etcd refused the mirror's own login because auth is not enabled. */
  loginRefusedAsDisabled(): void {
    if (this.statusSaysEnabled !== true) this.setEnabled(false);
  }

  state(): AuthState {
    return { enabled: this.enabled, mirrorAllowed: this.mirrorAllowed, authRevision: this.authRevision };
  }

  /** etcd's auth store has reached at least `revision` (learned elsewhere): kept, and told to whoever follows. */
  noteAuthRevision(revision: number): void {
    if (!(revision > this.authRevision)) return;
    this.change(() => {
      this.authRevision = revision;
    });
  }

  /** Takes over what the gate of the process that keeps the mirror believes. */
  follow(state: AuthState): void {
    this.change(() => {
      this.enabled = state.enabled;
      this.mirrorAllowed = state.mirrorAllowed;
      this.authRevision = Math.max(this.authRevision, state.authRevision);
    });
  }

  /** Every change of what the gate believes (a writer tells its workers). */
  onStateChange(listener: (state: AuthState) => void): void {
    this.stateListeners.add(listener);
  }

  /** Called when the mirror may serve again (a refused mirror watch may retry at once). */
  onAccepted(listener: () => void): void {
    this.listeners.add(listener);
  }

  private setEnabled(enabled: boolean): void {
    this.change(() => {
      this.enabled = enabled;
    });
  }

  private change(update: () => void): void {
    const [wasRequired, wasEnabled, wasRevision] = [this.isRequired(), this.enabled, this.authRevision];
    update();
    const [required, enabled] = [this.isRequired(), this.enabled];
    if (enabled !== wasEnabled || required !== wasRequired || this.authRevision !== wasRevision) for (const listener of this.stateListeners) listener(this.state());
    this.memory?.save({ enabled, authRevision: this.authRevision });
    if (enabled !== wasEnabled) {
      this.log.warn(
        enabled
          ? this.hasIdentity
            ? 'upstream has auth enabled: the mirror serves each client what etcd lets it read'
            : 'upstream has auth enabled: the mirror is not used, every request is forwarded (no --user for the mirror)'
          : 'upstream has auth disabled: the mirror serves everyone',
      );
    }
    if (required === wasRequired) return;
    this.onChange(required);
    if (required && this.hasIdentity) this.log.warn("the mirror's user (--user) may not read the mirrored keys: every request is forwarded");
    if (!required) for (const listener of this.listeners) listener();
  }

  /** Asks the upstream once; resolves when it has answered or failed. */
  async probe(client: Client): Promise<void> {
    if (Date.now() >= this.authStatusUnsupportedUntil) {
      try {
        const answer = await callUpstream<{ enabled?: boolean; authRevision?: string }>(client, 'etcdserverpb.Auth', 'AuthStatus', {}, { deadlineMs: PROBE_TIMEOUT_MS, reason: 'auth-status' });
        this.statusSaysEnabled = answer.enabled === true;
        const revision = Number(answer.authRevision ?? 0);
        this.change(() => {
          this.authRevision = Math.max(this.authRevision, Number.isSafeInteger(revision) ? revision : 0);
          this.enabled = this.statusSaysEnabled === true;
        });
        return;
      } catch (error) {
        if (!isServiceError(error) || error.code !== status.UNIMPLEMENTED) {
          if (isAuthRefusal(error)) this.setEnabled(true);
          return;
        }
        this.statusSaysEnabled = null;
        this.authStatusUnsupportedUntil = Date.now() + AUTH_STATUS_RETRY_MS;
      }
    }
    try {
      await callUpstream(client, 'etcdserverpb.KV', 'Range', PROBE_REQUEST, { deadlineMs: PROBE_TIMEOUT_MS, reason: 'auth-status' });
      this.setEnabled(false);
    } catch (error) {
      if (isAuthRefusal(error)) this.setEnabled(true);
    }
  }

  /**
   * Probes until close(), when there is a reason, every `intervalMs` at most:
   * while auth is believed off and the mirror has served anyone since the
   * last probe (auth turned on meanwhile would have it serve what etcd now
   * refuses); while auth is believed on, once a minute, to learn it went
   * off. An idle proxy asks nothing.
   */
  startProbing(target: ProbeTarget, intervalMs = AUTH_PROBE_INTERVAL_MS): void {
    let inFlight = false;
    this.timer = setInterval(() => {
      const client = target();
      if (inFlight || client === undefined) return;
      const due = this.enabled ? Date.now() - this.lastProbeAt >= AUTH_ON_PROBE_INTERVAL_MS : this.served;
      if (!due) return;
      this.served = false;
      this.lastProbeAt = Date.now();
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
