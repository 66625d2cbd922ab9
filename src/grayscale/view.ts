import { encodeEvent, type EncodedEvent } from '../etcd/event-bytes';
import type { EncodedKeyValue } from '../etcd/kv-bytes';
import type { Logger } from '../log';
import { KeyRanges, prefixEnd } from '../etcd/key-ranges';
import type { GrayscaleSettings } from '../settings/types';
import type { MirrorStore, WithheldChange } from '../store/store';
import { judgeValue, type MachineTraits } from './mark';

/** Malformed marks already logged, by key and revision; forgotten in bulk past this many. */
const LOGGED_LIMIT = 10_000;

const sameRecord = (a: EncodedKeyValue | undefined, b: EncodedKeyValue | undefined): boolean =>
  a === undefined || b === undefined ? a === b : a.mod_revision === b.mod_revision && a.bytes.equals(b.bytes);

/**
 * This machine's view of the keyspace under the grayscale prefixes: a version
 * whose mark does not name this proxy is withheld, as if it had never been
 * received. The mirror stores the view (the visible versions, and the events
 * that change them) and, apart, each key's newest withheld version; everything
 * outside the prefixes passes through unchanged.
 */
export class GrayscaleView {
  private ranges: KeyRanges | null = null;
  private identity: MachineTraits = { hostname: '', labels: {} };
  private current: GrayscaleSettings = { prefixes: [], hostname: '', labels: {} };
  private readonly logged = new Set<string>();
  /** The newest revision at which a key under the prefixes changed upstream, as far as this process saw. */
  private changedAt = 0;

  constructor(
    settings: GrayscaleSettings,
    private readonly log: Logger,
    private readonly onMalformed: () => void = () => undefined,
  ) {
    this.configure(settings);
  }

  /** Takes new settings (a reload); the caller re-derives the stored view. */
  configure(settings: GrayscaleSettings): void {
    this.ranges = settings.prefixes.length === 0 ? null : KeyRanges.fromPrefixes(settings.prefixes.map((p) => Buffer.from(p)));
    this.identity = { hostname: settings.hostname, labels: { ...settings.labels } };
    this.current = settings;
  }

  get settings(): GrayscaleSettings {
    return this.current;
  }

  /** The newest revision that changed a key under the prefixes (this process's view of etcd; 0: none seen). */
  get lastChange(): number {
    return this.changedAt;
  }

  get enabled(): boolean {
    return this.ranges !== null;
  }

  /** True when the key is under a grayscale prefix. */
  covers(key: Buffer): boolean {
    return this.ranges !== null && this.ranges.contains(key);
  }

  /** True when a request's (key, range_end) may name a key under a grayscale prefix. */
  touches(key: Buffer, rangeEnd: Buffer): boolean {
    return this.ranges !== null && this.ranges.touches(key, rangeEnd);
  }

  /** True when this version of a key is visible here. */
  applies(record: EncodedKeyValue): boolean {
    const verdict = judgeValue(record.value, this.identity);
    if (verdict.kind !== 'malformed') return verdict.kind === 'applies';
    const id = `${record.key.toString('base64')}@${record.mod_revision}`;
    if (!this.logged.has(id)) {
      if (this.logged.size >= LOGGED_LIMIT) this.logged.clear();
      this.logged.add(id);
      this.onMalformed();
      this.log.warn({ key: record.key.toString('utf8'), revision: record.mod_revision, reason: verdict.reason }, 'grayscale mark cannot be read: this version applies nowhere');
    }
    return false;
  }

  /**
   * The events of one upstream watch response as this machine sees them: a
   * withheld put sends nothing, a put that applies carries the version that
   * was visible as its prev_kv, a delete of a key nothing visible held sends
   * nothing. `visibleOf` reads what the mirror holds before these events.
   */
  viewEvents(events: readonly EncodedEvent[], visibleOf: (key: Buffer) => EncodedKeyValue | undefined): { events: readonly EncodedEvent[]; withheld: WithheldChange[] } {
    if (this.ranges === null) return { events, withheld: [] };
    const visibleNow = new Map<string, EncodedKeyValue | null>();
    const withheld = new Map<string, WithheldChange>();
    const seen: EncodedEvent[] = [];
    for (const event of events) {
      const key = event.kv.key;
      if (!this.covers(key)) {
        seen.push(event);
        continue;
      }
      this.changedAt = Math.max(this.changedAt, event.kv.mod_revision);
      const id = key.toString('latin1');
      const earlier = visibleNow.get(id);
      const visible = earlier === undefined ? visibleOf(key) : (earlier ?? undefined);
      if (event.type === 'PUT' && !this.applies(event.kv)) {
        withheld.set(id, { key, record: event.kv });
        visibleNow.set(id, visible ?? null);
        continue;
      }
      withheld.set(id, { key, record: null });
      visibleNow.set(id, event.type === 'PUT' ? event.kv : null);
      if (event.type === 'DELETE' && visible === undefined) continue;
      seen.push(sameRecord(event.prev_kv, visible) ? event : encodeEvent(event.type, event.kv, visible));
    }
    return { events: seen, withheld: [...withheld.values()] };
  }

  /**
   * One page of a fresh list as this machine sees it: a key whose listed
   * version is withheld keeps the version the mirror held, if that one
   * applies. `heldOf` reads the mirror's content before the list.
   */
  viewListed(records: readonly EncodedKeyValue[], heldOf: (key: Buffer) => EncodedKeyValue | undefined): { visible: EncodedKeyValue[]; withheld: EncodedKeyValue[] } {
    if (this.ranges === null) return { visible: [...records], withheld: [] };
    const visible: EncodedKeyValue[] = [];
    const withheld: EncodedKeyValue[] = [];
    for (const record of records) {
      if (!this.covers(record.key) || this.applies(record)) {
        visible.push(record);
        continue;
      }
      withheld.push(record);
      const held = heldOf(record.key);
      if (held !== undefined && held.mod_revision < record.mod_revision && this.applies(held)) visible.push(held);
    }
    return { visible, withheld };
  }
}

/** What a change of grayscale settings changes in the stored view. */
export interface Rederivation {
  readonly visible: { key: Buffer; record: EncodedKeyValue | null }[];
  readonly withheld: WithheldChange[];
}

/**
 * The stored view again under the view's current settings, from what the
 * store holds: each key's newest version (withheld or visible) and the
 * version shown. A key now withheld whose shown version no longer applies
 * shows nothing (older versions are not kept); a withheld key now applying
 * shows its newest version.
 */
export function rederive(view: GrayscaleView, store: Pick<MirrorStore, 'get' | 'scan' | 'allWithheld' | 'withheld'>, prefixes: readonly string[]): Rederivation {
  const visible: Rederivation['visible'] = [];
  const withheld: WithheldChange[] = [];
  for (const newest of store.allWithheld()) {
    const shown = store.get(newest.key);
    if (!view.covers(newest.key) || view.applies(newest)) {
      visible.push({ key: newest.key, record: newest });
      withheld.push({ key: newest.key, record: null });
    } else if (shown !== undefined && !view.applies(shown)) {
      visible.push({ key: newest.key, record: null });
    }
  }
  for (const prefix of prefixes) {
    const start = Buffer.from(prefix);
    for (const shown of store.scan(start, prefixEnd(start))) {
      if (store.withheld(shown.key) !== undefined || view.applies(shown)) continue;
      visible.push({ key: shown.key, record: null });
      withheld.push({ key: shown.key, record: shown });
    }
  }
  return { visible, withheld };
}

/** Names the settings a stored view was derived under, so a change is noticed at start. */
export function describeSettings(settings: GrayscaleSettings): string {
  if (settings.prefixes.length === 0) return '';
  const labels = Object.entries(settings.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify({ prefixes: [...settings.prefixes].sort(), hostname: settings.hostname, labels });
}
