import { diffConfig, type ConfigChanges, type LiveSetting } from '../config-diff';
import type { Logger } from '../log';
import type { ProxyConfig } from '../settings/types';

/**
 * A reload, as every process applies it: each live setting that changed is
 * handed to `apply` (which throws when it does not load); a setting that did
 * not load keeps its old value, so a later reload compares against that.
 */
export function createReconfigure(config: ProxyConfig, log: Logger, apply: (next: ProxyConfig, setting: LiveSetting) => void): (next: ProxyConfig) => ConfigChanges {
  let current = config;
  return (next) => {
    const changes = diffConfig(current, next);
    const applied: LiveSetting[] = [];
    const refused: string[] = [];
    for (const setting of changes.live) {
      try {
        apply(next, setting);
        applied.push(setting);
      } catch (error) {
        refused.push(setting);
        log.error({ setting, err: error instanceof Error ? error.message : String(error) }, 'reloaded setting does not load; keeping the one in use');
      }
    }
    current = {
      ...next,
      ...Object.fromEntries(refused.map((key) => [key, current[key as keyof ProxyConfig]])),
      ...Object.fromEntries(changes.needRestart.map((key) => [key, current[key as keyof ProxyConfig]])),
    };
    log.info({ applied, needRestart: changes.needRestart, refused }, 'configuration reloaded');
    return { live: applied, needRestart: changes.needRestart };
  };
}
