import { LIVE_FIELDS, type LiveField } from './settings/table';
import type { ProxyConfig } from './settings/types';

/** A setting a running proxy takes over on a reload (SIGHUP, or its config file changed): its row in the settings table says live. */
export type LiveSetting = LiveField;
const LIVE: ReadonlySet<string> = new Set(LIVE_FIELDS);

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
    else if (LIVE.has(key)) live.push(key as LiveSetting);
    else needRestart.push(key);
  }
  return { live, needRestart };
}
