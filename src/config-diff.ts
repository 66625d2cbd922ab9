import type { ProxyConfig } from './config';

/** Settings a running proxy takes over on a reload (SIGHUP, or its config file changed). */
const LIVE = ['endpoints', 'discovery', 'syncIntervalMs', 'mode', 'writeRejectHttpStatus', 'logLevel', 'upstreamTls', 'serverTls', 'grayscale'] as const;

export type LiveSetting = (typeof LIVE)[number];

export interface ConfigChanges {
  /** Changed settings the proxy applies without closing any connection. */
  readonly live: LiveSetting[];
  /** Changed settings that take effect only at the next start (the old values stay in use). */
  readonly needRestart: string[];
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * What a reload changes. Turning client TLS on or off changes what the port
 * speaks to connections already open, so it waits for a restart; new
 * certificate files for a port already on TLS do not.
 */
export function diffConfig(current: ProxyConfig, next: ProxyConfig): ConfigChanges {
  const live: LiveSetting[] = [];
  const needRestart: string[] = [];
  for (const key of Object.keys(current) as (keyof ProxyConfig)[]) {
    if (key === 'configFile' || same(current[key], next[key])) continue;
    if (key === 'serverTls' && (current.serverTls === null) !== (next.serverTls === null)) needRestart.push(key);
    else if ((LIVE as readonly string[]).includes(key)) live.push(key as LiveSetting);
    else needRestart.push(key);
  }
  return { live, needRestart };
}
