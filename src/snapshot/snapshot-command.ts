import { parseArgs } from 'node:util';
import { parseEndpoint } from '../etcd/endpoint';
import { toApisixYaml } from './apisix';
import { writeAtomically } from '../files/atomic-file';
import { SnapshotError, openSnapshot } from './format';
import { restoreSnapshot } from './restore';
import { saveFromCluster, saveFromDataDir } from './save';
import type { KeyValueFields } from '../etcd/records';
import { defaultText } from '../settings/table';

export const SNAPSHOT_USAGE = `Usage:
  etcd-cache-proxy snapshot save FILE --data-dir DIR        the mirror of a proxy's data dir (also while it runs)
  etcd-cache-proxy snapshot save FILE --endpoints URL[,URL]  the whole keyspace of a live cluster
  etcd-cache-proxy snapshot restore FILE --data-dir DIR [--force]
                                                             seed a mirror: a proxy on DIR serves it before it reaches etcd
  etcd-cache-proxy snapshot apisix FILE [--apisix-prefix ${defaultText('apisix-prefix')}] [--out apisix.yaml]
                                                             APISIX's standalone apisix.yaml from a snapshot (stdout without --out)
  etcd-cache-proxy snapshot push | pull ...                  to and from object storage (--snapshot-url s3://...; 'snapshot push --help')
  etcd-cache-proxy snapshot keygen --out DIR                 a key pair for signed snapshots in object storage ('snapshot keygen --help')
`;

type Output = { out: (text: string) => void; err: (text: string) => void };

const OPTIONS = {
  'data-dir': { type: 'string' },
  endpoints: { type: 'string' },
  force: { type: 'boolean' },
  'apisix-prefix': { type: 'string', default: defaultText('apisix-prefix') },
  out: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

/** `etcd-cache-proxy snapshot ...`; returns the exit code. */
export async function snapshotCommand(args: readonly string[], io: Output): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'help' || action === '--help' || action === '-h') {
    io.out(SNAPSHOT_USAGE);
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    io.err(`etcd-cache-proxy snapshot: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n${SNAPSHOT_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const file = positionals[0];
  const run = action === 'save' ? save : action === 'restore' ? restore : action === 'apisix' ? apisix : undefined;
  if (file === undefined || positionals.length > 1 || run === undefined) {
    io.err(SNAPSHOT_USAGE);
    return 2;
  }
  try {
    return await run(file, values, io);
  } catch (error) {
    const message = error instanceof SnapshotError ? `refused: ${error.message}` : error instanceof Error ? error.message : String(error);
    io.err(`etcd-cache-proxy snapshot ${action}: ${message}\n`);
    return 1;
  }
}

async function save(file: string, values: Values, io: Output): Promise<number> {
  if ((values['data-dir'] === undefined) === (values.endpoints === undefined)) {
    io.err(`etcd-cache-proxy snapshot save: give exactly one of --data-dir and --endpoints\n${SNAPSHOT_USAGE}`);
    return 2;
  }
  const saved =
    values['data-dir'] !== undefined
      ? await saveFromDataDir(values['data-dir'], file)
      : await saveFromCluster(values.endpoints?.split(',').filter((e) => e !== '').map(parseEndpoint) ?? [], file);
  io.out(`saved ${saved.keys} keys at revision ${saved.revision} to ${file}\n`);
  return 0;
}

async function restore(file: string, values: Values, io: Output): Promise<number> {
  if (values['data-dir'] === undefined) {
    io.err(`etcd-cache-proxy snapshot restore: --data-dir is required\n${SNAPSHOT_USAGE}`);
    return 2;
  }
  const restored = await restoreSnapshot(file, values['data-dir'], { force: values.force === true });
  io.out(`restored ${restored.keys} keys at revision ${restored.revision} into ${values['data-dir']}\n`);
  return 0;
}

async function apisix(file: string, values: Values, io: Output): Promise<number> {
  const reader = await openSnapshot(file);
  // The whole file is checked before anything is written: a damaged snapshot must not become a gateway's configuration.
  const records: KeyValueFields[] = [];
  for await (const record of reader.records()) records.push(record);
  const exported = toApisixYaml(records, values['apisix-prefix']);
  if (values.out === undefined) io.out(exported.yaml);
  else await writeAtomically(values.out, (out) => out.write(exported.yaml));
  io.err(`apisix.yaml: ${JSON.stringify(exported.counts)}${exported.skipped.length > 0 ? `; left out ${exported.skipped.length} keys that are not configuration objects` : ''}\n`);
  return 0;
}
