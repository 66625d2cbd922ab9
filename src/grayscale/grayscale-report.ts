import type { MirrorStore } from '../store/store';
import type { GrayscaleView } from './view';

export interface WithheldKey {
  readonly key: string;
  /** The mod revision of the version this machine shows; null: it shows no version of the key. */
  readonly visible_mod_revision: number | null;
  /** The mod revision of the key's newest version, which this machine withholds. */
  readonly newest_mod_revision: number;
}

export interface GrayscaleReport {
  readonly enabled: boolean;
  readonly prefixes: readonly string[];
  readonly hostname: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The mirror revision the list was read at. */
  readonly revision: number;
  readonly withheld: readonly WithheldKey[];
}

/** GET /grayscale: this machine's identity and every key whose newest version it does not show. */
export function grayscaleReport(view: GrayscaleView, store: MirrorStore): GrayscaleReport {
  const { prefixes, hostname, labels } = view.settings;
  const withheld: WithheldKey[] = [];
  for (const newest of store.allWithheld()) {
    const shown = store.get(newest.key);
    withheld.push({ key: newest.key.toString('utf8'), visible_mod_revision: shown?.mod_revision ?? null, newest_mod_revision: newest.mod_revision });
  }
  return { enabled: view.enabled, prefixes, hostname, labels, revision: store.meta().revision, withheld };
}
