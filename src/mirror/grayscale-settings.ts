import type { GrayscaleSettings } from '../settings/types';
import type { Logger } from '../log';
import type { Mirror } from './mirror';
import type { MirrorStore } from '../store/store';
import { describeSettings, rederive, type GrayscaleView } from '../grayscale/view';

/**
 * Brings the stored view in line with the view's settings, when they differ
 * from those it was derived under (a restart or a reload with other
 * prefixes, hostname or labels). Without a running mirror (at start) the
 * store is changed directly; with one, through it, so watchers and caches
 * hear of it. Returns whether anything was derived again.
 */
export function applyGrayscaleSettings(
  store: MirrorStore,
  view: GrayscaleView,
  settings: GrayscaleSettings,
  log: Logger,
  running?: { readonly mirror: Mirror; readonly before: GrayscaleView },
): boolean {
  const described = describeSettings(settings);
  const stored = store.grayscaleSettings();
  view.configure(settings);
  if (stored === described) return false;
  const change = (): void => {
    const changes = rederive(view, store, settings.prefixes);
    store.rederive(changes.visible, changes.withheld, described);
    log.info({ settings: described === '' ? 'off' : JSON.parse(described), keysChanged: changes.visible.length, withheld: store.withheldCount() }, 'grayscale settings changed: this machine\'s view derived again');
  };
  if (running === undefined) change();
  else running.mirror.rederive(change, (key, rangeEnd) => running.before.touches(key, rangeEnd) || view.touches(key, rangeEnd));
  return true;
}
