import type { Socket } from 'node:net';
import type { AuthDirectory, TokenTeller } from '../auth/directory';
import type { AuthGate } from '../auth/auth-gate';
import type { LoginBudget } from '../auth/login-limits';
import type { UpstreamLogin } from '../auth/upstream-login';
import type { LiveSetting } from '../config-diff';
import type { HostPort } from '../etcd/endpoint';
import type { Scrape } from '../gateway/http-gateway';
import type { GrayscaleView } from '../grayscale/view';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Mirror } from '../mirror/mirror';
import type { MirrorScope } from '../mirror/mirror-scope';
import type { ProxyConfig } from '../settings/types';
import type { MirrorStore } from '../store/store';
import type { Liveness } from '../upstream/liveness';
import type { SelfAddresses } from '../upstream/loop-guard';
import type { TierStaleness } from '../upstream/tier-stale';
import type { UpstreamPool } from '../upstream/pool';

/** What every process is started with. */
export interface ProxyDeps {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** What /metrics answers, when not this process's registry alone (workers/). */
  readonly scrape?: Scrape;
}

/**
 * What the serving side (the client port: gRPC, the JSON gateway) needs of
 * the side that keeps the mirror. In one process that is the mirror itself;
 * in a worker process (workers/) the same parts follow the process that
 * keeps it.
 */
export interface MirrorSide {
  readonly store: MirrorStore;
  /** The members forwarded calls go to. */
  readonly pool: UpstreamPool;
  readonly liveness: Liveness;
  readonly mirror: Mirror;
  readonly auth: AuthGate;
  /** Who the proxy's own calls are made as (--user). */
  readonly identity: UpstreamLogin;
  readonly grayscale: GrayscaleView;
  /** The ranges the mirror holds now (what is configured, narrowed to what its user may read). */
  readonly scope: MirrorScope;
  /** Carried by every forwarded call: one that comes back to this proxy is refused, not forwarded again. */
  readonly instanceId: string;
  /** etcd was found compacted past what the log holds: the log is pruned to match. */
  followCompaction(): void;
  /** The client port is bound: member discovery starts (its loop guard needs the address). */
  listening(self: SelfAddresses): void;
  /** With --workers: the tokens each serving process learns, told to the others. */
  readonly tokens?: TokenSharing;
  /** With --workers: whether the upstream tier is stale, shared through the primary with the other processes. */
  readonly tier?: TierStaleness;
}

export interface TokenSharing {
  /** What this process learned or found out, for the others. */
  readonly tell: TokenTeller;
  /** Takes what the other processes learned or found out. */
  onShared(directory: Pick<AuthDirectory, 'adopt' | 'adoptForget' | 'adoptAuthRevision'>): void;
  /** Offline login attempts are reserved here: the counts are shared by every process. */
  readonly loginBudget: LoginBudget;
}

/** The side that keeps the mirror: one per data dir, whatever serves it. */
export interface MirrorKeeper {
  readonly side: MirrorSide;
  /** Called with M after every commit that moved it. */
  onRevision(listener: (revision: number) => void): void;
  /** Takes over one live setting of a reloaded configuration; throws when it does not load. */
  reconfigure(next: ProxyConfig, setting: LiveSetting): void;
  /** A stop begins: this proxy leaves its tier's list (--resolver-prefix) before its port stops serving. */
  leaveTier(): Promise<void>;
  close(): Promise<void>;
}

/** The client port, served from a MirrorSide. */
export interface ServingSide {
  readonly address: HostPort;
  readonly metricsAddress: HostPort | null;
  reconfigure(next: ProxyConfig, setting: LiveSetting): void;
  close(): Promise<void>;
}

/** A client port another process listens on (the primary of --workers), handing this one connections. */
export interface HandedPort {
  readonly address: HostPort;
  /** Takes the function that serves each connection handed over. */
  serve(accept: (socket: Socket) => void): void;
}
