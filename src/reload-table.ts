import type { ChannelCredentials } from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import type { LiveSetting } from './config-diff';
import { setLogLevel, type Logger } from './log';
import type { GrayscaleSettings, ProxyConfig } from './settings/types';
import { serverOptionsBuilder, serverTlsFiles } from './tls/server-tls';
import { upstreamCredentialsBuilder, upstreamTlsFiles } from './tls/upstream-tls';
import type { WatchedMaterial } from './tls/watched-material';
import type { Membership } from './upstream/membership';

/**
 * The parts of one process that take live settings on a reload. The side
 * that keeps the mirror has the logger, upstream credentials and member
 * discovery; a serving side has the client port's TLS; a worker has its own
 * logger and credentials; each applies grayscale settings its own way (the mirror's process
 * re-derives the store, a worker follows).
 */
export interface ReloadParts {
  readonly log?: Logger;
  readonly upstreamCredentials?: WatchedMaterial<ChannelCredentials>;
  readonly membership?: Membership;
  readonly serverTls?: WatchedMaterial<SecureContextOptions> | null;
  readonly grayscale?: (next: GrayscaleSettings, before: GrayscaleSettings) => void;
}

type Apply = (parts: ReloadParts, next: ProxyConfig, before: ProxyConfig) => void;

const rediscover: Apply = (parts, next) =>
  parts.membership?.reconfigure({ source: next.discovery, endpoints: next.endpoints, syncIntervalMs: next.syncIntervalMs, tls: next.upstreamTls });

/** Read on each use from the running configuration (a request's mode, a refusal's status): nothing to do. */
const readOnUse: Apply = () => undefined;

/**
 * How each live setting (its row in settings/table.ts says live) is taken
 * over, one row per setting, the same in every process: a process applies
 * the row with the parts it has. A setting missing here does not compile.
 */
export const RELOAD: Readonly<Record<LiveSetting, Apply>> = {
  endpoints: rediscover,
  discovery: rediscover,
  syncIntervalMs: rediscover,
  logLevel: (parts, next) => {
    if (parts.log !== undefined) setLogLevel(parts.log, next.logLevel);
  },
  mode: readOnUse,
  writeRejectHttpStatus: readOnUse,
  grayscale: (parts, next, before) => parts.grayscale?.(next.grayscale, before.grayscale),
  upstreamTls: (parts, next, before) => {
    parts.upstreamCredentials?.retarget(upstreamTlsFiles(next.upstreamTls), upstreamCredentialsBuilder(next.upstreamTls));
    rediscover(parts, next, before);
  },
  // Turning client TLS on or off waits for a restart (config-diff); new files for a port already on TLS do not.
  serverTls: (parts, next) => {
    if (next.serverTls !== null) parts.serverTls?.retarget(serverTlsFiles(next.serverTls), serverOptionsBuilder(next.serverTls));
  },
};
