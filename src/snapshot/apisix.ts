import { stringify } from 'yaml';
import type { KeyValueFields } from '../etcd/records';

/**
 * The directories APISIX keeps under its etcd prefix that its standalone
 * mode reads from apisix.yaml, each a list of objects keyed by id.
 */
const LIST_SECTIONS = [
  'routes',
  'services',
  'upstreams',
  'ssls',
  'consumers',
  'consumer_groups',
  'global_rules',
  'plugin_configs',
  'plugin_metadata',
  'stream_routes',
  'protos',
  'secrets',
] as const;

export interface ApisixExport {
  readonly yaml: string;
  /** Objects written, per section. */
  readonly counts: Record<string, number>;
  /** Keys under the prefix that are not configuration objects (directory markers, unknown directories, bad JSON). */
  readonly skipped: string[];
}

function parseObject(value: Buffer): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(value.toString('utf8'));
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * APISIX's standalone configuration (conf/apisix.yaml) from the keys under
 * its etcd prefix: `<prefix>/routes/1` becomes an item of `routes` with id 1,
 * and so on. The `#END` line APISIX waits for before it loads a file comes
 * last, so a gateway never loads a half-written one. Directory markers
 * (APISIX's `init_dir` values) and anything that is not a JSON object are
 * left out and reported.
 */
export function toApisixYaml(records: Iterable<KeyValueFields>, prefix: string): ApisixExport {
  const root = prefix.endsWith('/') ? prefix : `${prefix}/`;
  const sections = new Map<string, Record<string, unknown>[]>();
  const skipped: string[] = [];
  let plugins: unknown = undefined;
  for (const record of records) {
    const key = record.key.toString('utf8');
    if (!key.startsWith(root)) continue;
    const [section, ...rest] = key.slice(root.length).split('/');
    const id = rest.join('/');
    if (section === 'plugins' && id === '') {
      // The list of enabled plugins is one key holding a JSON array.
      try {
        plugins = JSON.parse(record.value.toString('utf8'));
      } catch {
        skipped.push(key);
      }
      continue;
    }
    const object = parseObject(record.value);
    if (section === undefined || id === '' || !(LIST_SECTIONS as readonly string[]).includes(section) || object === null) {
      skipped.push(key);
      continue;
    }
    // APISIX's own objects carry their id; the key names it for those that do not.
    if (section === 'consumers') object.username ??= id;
    else object.id ??= id;
    const list = sections.get(section) ?? [];
    list.push(object);
    sections.set(section, list);
  }
  const document: Record<string, unknown> = {};
  const counts: Record<string, number> = {};
  for (const section of LIST_SECTIONS) {
    const list = sections.get(section);
    if (list === undefined) continue;
    document[section] = list;
    counts[section] = list.length;
  }
  if (plugins !== undefined) document.plugins = plugins;
  const body = Object.keys(document).length === 0 ? '' : stringify(document, { lineWidth: 0 });
  return { yaml: `${body}#END\n`, counts, skipped };
}
