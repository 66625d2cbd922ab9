// Every setting of `etcd-cache-proxy start`, one row each: its flag (also its
// YAML key and, upper-cased, its environment variable), what it means, its
// default as a value, how its text is read, which ProxyConfig field it feeds
// and whether a running proxy takes a new value over on reload. The help text,
// the live-reload set and the defaults of loadConfig all come from here, and a
// unit test holds the README's configuration table to it.
import { hostname } from 'node:os';
import { parseEndpoint, parseHostPort } from '../etcd/endpoint';
import { LOG_LEVELS, PROXY_MODES, S3_REQUEST_CHECKSUMS, STALE_READS, type ProxyConfig } from './types';
import {
  durationOfAtLeast,
  formatDurationMs,
  formatHostPort,
  nonBlank,
  nonEmpty,
  oneOf,
  parseBoolean,
  parseClientUrl,
  parseDnsServer,
  parseDurationMs,
  parseEndpointList,
  parseHttpErrorStatus,
  parseHttpUrl,
  parseInitialCluster,
  parseLabels,
  parseLogLevel,
  parseMetricsAddr,
  parseSnapshotUrl,
  parseSrvDomain,
  parseSrvName,
  parseUpstreamUser,
  parseVerifyKeyFiles,
  parseWorkers,
  prefixList,
  privateKeyFile,
  readableFile,
  wholeNumberOfAtLeast,
} from './values';

export const ENV_PREFIX = 'ETCD_CACHE_PROXY_';

/** One setting, without its flag (the key it is filed under in SETTINGS). */
export interface SettingRow<T, F extends keyof ProxyConfig = keyof ProxyConfig, L extends boolean = boolean> {
  readonly description: string;
  /** The ProxyConfig field this setting feeds (several TLS or S3 flags feed one). */
  readonly field: F;
  /** A reload (SIGHUP, or the config file changed) applies a new value without a restart. */
  readonly live: L;
  /** The value when no source gives one; a function when it depends on the machine. */
  readonly default: T | (() => T);
  readonly parse: (text: string) => T;
  /** The default as the help text and the README write it; null, or a default that returns null: there is none to show. */
  readonly show?: (value: T) => string | null;
  /** A comma-separated list, which a repeated flag extends (any other repeated flag keeps its last value, as etcd's do). */
  readonly list?: true;
  /** A switch: given without a value on the command line ('true'/'false' in the environment and the file). */
  readonly boolean?: true;
  /** Not a key of the YAML file (the file's own name). */
  readonly notInFile?: true;
}

/** Infers a row's value type and keeps its field and liveness as literals (the reload code switches on them). */
function row<T, F extends keyof ProxyConfig, L extends boolean>(spec: SettingRow<T, F, L>): SettingRow<T, F, L> {
  return spec;
}


/** Every setting the proxy accepts; flags follow `etcd grpc-proxy` where one exists. The order is the help text's. */
export const SETTINGS = {
  endpoints: row({
    description: 'comma-separated upstream etcd client URLs, used when no discovery option is set',
    field: 'endpoints', live: true, list: true,
    default: [parseEndpoint('http://127.0.0.1:2379')], parse: parseEndpointList, show: (endpoints) => endpoints.map((e) => e.url).join(','),
  }),
  'initial-cluster': row({
    description: 'name=peerURL,... of the cluster: its members are asked for their client URLs (beats --endpoints)',
    field: 'discovery', live: true, list: true, default: null, parse: parseInitialCluster,
  }),
  'discovery-srv': row({
    description: 'domain whose _etcd-client._tcp SRV records list the members (beats --initial-cluster)',
    field: 'discovery', live: true, default: null, parse: parseSrvDomain,
  }),
  'discovery-srv-name': row({ description: 'suffix of the SRV service name: _etcd-client-<name>._tcp', field: 'discovery', live: true, default: '', parse: parseSrvName }),
  'discovery-dns-server': row({
    description: 'host:port of the DNS server for --discovery-srv (default: the system resolver)',
    field: 'discovery', live: true, default: null, parse: parseDnsServer,
  }),
  'sync-interval': row({
    description: 'how often the member list is refreshed from the cluster',
    field: 'syncIntervalMs', live: true, default: 30_000, parse: durationOfAtLeast(100, '100ms'), show: formatDurationMs,
  }),
  'listen-addr': row({
    description: 'host:port for gRPC and HTTP clients',
    field: 'listenAddr', live: false, default: { host: '127.0.0.1', port: 23790 }, parse: parseHostPort, show: formatHostPort,
  }),
  'advertise-client-url': row({
    description: 'client URL reported for every member in MemberList (default: http://<listen-addr>)',
    field: 'advertiseClientUrl', live: false, default: null, parse: parseClientUrl,
  }),
  'resolver-prefix': row({
    description: "prefix under which this proxy registers its advertised client URL with a lease, as etcd grpc-proxy does; MemberList then lists every live proxy registered under it (default: none, off)",
    field: 'resolver', live: false, default: null, parse: nonEmpty,
  }),
  'resolver-ttl': row({
    description: "with --resolver-prefix: seconds the registration's lease lives without its keep-alive (etcd grpc-proxy's flag; required with the prefix, as there)",
    field: 'resolver', live: false, default: null, parse: wholeNumberOfAtLeast(1, 'must be a whole number of seconds, at least 1'),
  }),
  'data-dir': row({ description: 'directory for the proxy state', field: 'dataDir', live: false, default: 'etcd-cache-proxy.data', parse: nonBlank }),
  'metrics-addr': row({ description: 'extra listener for /metrics only, host:port or http://host:port', field: 'metricsAddr', live: false, default: null, parse: parseMetricsAddr }),
  'log-level': row({ description: `one of ${LOG_LEVELS.join(', ')}`, field: 'logLevel', live: true, default: 'info' as const, parse: parseLogLevel }),
  mode: row({
    description: `${PROXY_MODES.join(' or ')}; readonly refuses every write`,
    field: 'mode', live: true, default: 'readwrite' as const, parse: (value: string) => oneOf(PROXY_MODES, value),
  }),
  'upstream-timeout': row({
    description: 'the upstream is lost when no member answered for this long',
    field: 'upstreamTimeoutMs', live: false, default: 3000, parse: durationOfAtLeast(100, '100ms'), show: formatDurationMs,
  }),
  'stale-reads': row({
    description: 'while the upstream is lost: allow (serve the mirror, marked stale) or deny',
    field: 'staleReads', live: false, default: 'allow' as const, parse: (value: string) => oneOf(STALE_READS, value),
  }),
  'write-reject-http-status': row({
    description: 'HTTP status of a write refused on the JSON gateway (read-only mode, upstream lost), 400-599',
    field: 'writeRejectHttpStatus', live: true, default: 501, parse: parseHttpErrorStatus,
  }),
  'mirror-prefix': row({
    description: 'key prefix to mirror, comma-separated or repeated (default: the whole keyspace)',
    field: 'mirrorPrefixes', live: false, list: true, default: [] as string[], parse: prefixList('mirror everything'),
  }),
  'grayscale-prefix': row({
    description: 'key prefix whose JSON values may carry annotations.grayscale, applied only on the machines it names; comma-separated or repeated (default: none, off)',
    field: 'grayscale', live: true, list: true, default: [] as string[], parse: prefixList('turn grayscale off'),
  }),
  'grayscale-hostname': row({
    description: "this machine's name in grayscale marks' hostname lists (default: the machine's hostname)",
    field: 'grayscale', live: true, default: () => hostname(), parse: nonBlank,
  }),
  'grayscale-label': row({
    description: "key=value this machine matches in grayscale marks' labels; comma-separated or repeated",
    field: 'grayscale', live: true, list: true, default: {} as Record<string, string>, parse: parseLabels,
  }),
  history: row({
    description: 'revisions of events the mirror keeps for replay and old reads',
    field: 'history', live: false, default: 100_000, parse: wholeNumberOfAtLeast(1, 'must be a whole number of revisions, at least 1'),
  }),
  'watch-progress-notify-interval': row({
    description: "progress notifications for watches that asked for them (etcd's default)",
    field: 'watchProgressNotifyIntervalMs', live: false, default: 600_000, parse: durationOfAtLeast(10, '10ms'), show: formatDurationMs,
  }),
  'watch-buffer-bytes': row({
    description: 'bytes a watch stream may have waiting for a slow client before its watches are cancelled',
    field: 'watchBufferBytes', live: false, default: 32 * 1024 * 1024, parse: wholeNumberOfAtLeast(65_536, 'must be a whole number of bytes, at least 65536'),
  }),
  'response-cache-bytes': row({
    description: 'memory for encoded answers of repeated mirror reads, reused while their keys are unchanged (0: off)',
    field: 'responseCacheBytes', live: false, default: 128 * 1024 * 1024, parse: wholeNumberOfAtLeast(0, 'must be a whole number of bytes (0 turns the cache off)'),
  }),
  'consistency-check-interval': row({
    description: 'the least time between two pages of the rolling comparison of the mirror with the upstream (0: never)',
    field: 'consistencyCheckIntervalMs', live: false, default: 60_000, parse: (value: string) => (value === '0' ? 0 : parseDurationMs(value)), show: formatDurationMs,
  }),
  'consistency-check-bytes-per-second': row({
    description: 'what the consistency check may read from the upstream, averaged',
    field: 'consistencyCheckBytesPerSecond', live: false, default: 1024, parse: wholeNumberOfAtLeast(1, 'must be a whole number of bytes per second, at least 1'),
  }),
  'list-bytes-per-second': row({
    description: 'the fastest a list of the keyspace (first sync, or after a compaction) reads from the upstream (0: no limit)',
    field: 'listBytesPerSecond', live: false, default: 8 * 1024 * 1024, parse: wholeNumberOfAtLeast(0, 'must be a whole number of bytes per second (0: no limit)'),
  }),
  'snapshot-dir': row({
    description: 'directory for periodic snapshots of the mirror and an APISIX apisix.yaml export (default: none)',
    field: 'snapshotDir', live: false, default: null, parse: nonBlank,
  }),
  'snapshot-interval': row({
    description: 'how often a snapshot is written to --snapshot-dir',
    field: 'snapshotIntervalMs', live: false, default: 300_000, parse: durationOfAtLeast(100, '100ms'), show: formatDurationMs,
  }),
  'apisix-prefix': row({
    description: 'etcd prefix of the APISIX configuration exported to apisix.yaml',
    field: 'apisixPrefix', live: false, default: '/apisix', parse: nonEmpty,
  }),
  'snapshot-url': row({
    description: 'object storage for published snapshots, s3://bucket/prefix: served from when etcd is unreachable and the mirror is empty or older (default: none)',
    field: 'snapshotUrl', live: false, default: null, parse: parseSnapshotUrl,
  }),
  'snapshot-publish': row({
    description: "publish the mirror's snapshot and apisix.yaml to --snapshot-url every --snapshot-interval while it moves",
    field: 'snapshotPublish', live: false, boolean: true, default: false, parse: parseBoolean,
  }),
  'snapshot-keep': row({
    description: 'published snapshots kept in --snapshot-url; older ones are deleted',
    field: 'snapshotKeep', live: false, default: 10, parse: wholeNumberOfAtLeast(1, 'must be a whole number of snapshots, at least 1'),
  }),
  'snapshot-sign-key': row({
    description: "with --snapshot-publish: Ed25519 private key (PEM) that signs what is published ('etcd-cache-proxy snapshot keygen' makes one)",
    field: 'snapshotSignKey', live: false, default: null, parse: privateKeyFile,
  }),
  'snapshot-verify-key': row({
    description: 'Ed25519 public key files (PEM, one key each), comma-separated or repeated: a published snapshot is served only if one of them signed it (default: none, unsigned snapshots are taken)',
    field: 'snapshotVerifyKeys', live: false, list: true, default: [] as string[], parse: parseVerifyKeyFiles,
  }),
  'snapshot-max-bytes': row({
    description: 'the largest published snapshot fetched; a bigger one is refused before it is downloaded',
    // 256 MiB: a gateway's whole configuration is kilobytes to a few megabytes
    // (and etcd's own request limit is 1.5 MiB per value), so this leaves two
    // orders of magnitude of room while a planted object cannot fill the disk
    // or hold a proxy downloading for long during an outage.
    field: 'snapshotMaxBytes', live: false, default: 256 * 1024 * 1024, parse: wholeNumberOfAtLeast(1024, 'must be a whole number of bytes, at least 1024'),
  }),
  's3-endpoint': row({ description: 'an S3-compatible endpoint URL (default: AWS S3 for --s3-region)', field: 'objectStore', live: false, default: null, parse: parseHttpUrl }),
  's3-region': row({ description: 'region of the bucket', field: 'objectStore', live: false, default: 'us-east-1', parse: nonBlank }),
  's3-force-path-style': row({
    description: 'address the bucket as endpoint/bucket, as most S3-compatible stores want',
    field: 'objectStore', live: false, boolean: true, default: false, parse: parseBoolean,
  }),
  's3-request-checksum': row({
    description: 'when-supported or when-required: some S3-compatible stores take request checksums only where S3 requires them',
    field: 'objectStore', live: false, default: 'when-supported' as const, parse: (value: string) => oneOf(S3_REQUEST_CHECKSUMS, value),
  }),
  cacert: row({
    description: "CA bundle that signs the upstream members' certificates (https endpoints; default: the system CAs)",
    field: 'upstreamTls', live: true, default: null, parse: readableFile,
  }),
  cert: row({ description: 'client certificate the proxy presents to https upstream members', field: 'upstreamTls', live: true, default: null, parse: readableFile }),
  key: row({ description: 'key of --cert', field: 'upstreamTls', live: true, default: null, parse: readableFile }),
  'insecure-skip-tls-verify': row({
    description: 'accept any upstream certificate (testing only)',
    field: 'upstreamTls', live: true, boolean: true, default: false, parse: parseBoolean,
  }),
  user: row({
    description: "name:password the mirror logs in with when etcd has auth on (etcdctl's flag); it needs read permission on the mirrored keys, never root",
    field: 'upstreamUser', live: false, default: null, parse: parseUpstreamUser,
  }),
  'auth-refresh-interval': row({
    description: "with auth on: how long etcd's word on a token and on what its user may read holds; each token and user in use is checked again within it",
    field: 'authRefreshIntervalMs', live: false, default: 60_000, parse: durationOfAtLeast(100, '100ms'), show: formatDurationMs,
  }),
  'auth-offline-login': row({
    description: 'while etcd is down, answer logins whose name and password succeeded upstream recently (a salted scrypt hash is kept in the data dir)',
    field: 'authOfflineLogin', live: false, boolean: true, default: false, parse: parseBoolean,
  }),
  'auth-offline-max-age': row({
    description: 'with --auth-offline-login: how recent that upstream login must be; a token issued offline ends when that login is this old',
    field: 'authOfflineMaxAgeMs', live: false, default: 24 * 3_600_000, parse: durationOfAtLeast(1_000, '1s'), show: formatDurationMs,
  }),
  'auth-jwt-pub-key': row({
    description: "etcd's public key (PEM) for its JWT tokens (RS*, PS*, ES*, EdDSA): the proxy then checks them itself",
    field: 'authJwtPubKey', live: false, default: null, parse: readableFile,
  }),
  'cert-file': row({ description: 'certificate for clients: the client port then speaks TLS only (gRPC and HTTP)', field: 'serverTls', live: true, default: null, parse: readableFile }),
  'key-file': row({ description: 'key of --cert-file', field: 'serverTls', live: true, default: null, parse: readableFile }),
  'trusted-ca-file': row({ description: 'CA bundle for client certificates: clients must present one it signed', field: 'serverTls', live: true, default: null, parse: readableFile }),
  workers: row({
    description: 'serving processes sharing the client port, each using a core (auto: one per CPU this process may use); the mirror is kept by one more',
    field: 'workers', live: false, default: 1, parse: parseWorkers,
  }),
  'shutdown-grace': row({
    description: 'how long a stop waits for in-flight calls (e.g. 5s, 500ms)',
    field: 'shutdownGraceMs', live: false, default: 5000, parse: parseDurationMs, show: formatDurationMs,
  }),
  'config-file': row({ description: 'YAML file whose keys are these flag names', field: 'configFile', live: false, notInFile: true, default: null, parse: (value: string) => value }),
};

export type SettingFlag = keyof typeof SETTINGS;

/** The value each flag resolves to, by its row's parser. */
export type SettingValues = { readonly [F in SettingFlag]: (typeof SETTINGS)[F] extends SettingRow<infer T> ? T : never };

/** The ProxyConfig fields a running proxy takes over on reload: those fed by live rows. */
export type LiveField = { [F in SettingFlag]: (typeof SETTINGS)[F] extends { readonly live: true; readonly field: infer K } ? K : never }[SettingFlag];

/** Every row with its flag, in table order: what loops over the settings use. */
export const SETTING_ROWS: readonly (SettingRow<unknown> & { readonly flag: SettingFlag })[] = (Object.keys(SETTINGS) as SettingFlag[]).map((flag) => ({
  ...(SETTINGS[flag] as SettingRow<unknown>),
  flag,
}));

export const LIVE_FIELDS: readonly LiveField[] = [...new Set(SETTING_ROWS.filter((r) => r.live).map((r) => r.field as LiveField))];

/** The environment variable of a flag: ETCD_CACHE_PROXY_ and the flag upper-cased, dashes as underscores. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_');
}

/** The YAML key of a flag in the config file: the flag itself; null for the one setting the file cannot hold. */
export function fileKey(flag: SettingFlag): string | null {
  return SETTINGS[flag].notInFile === true ? null : flag;
}

export function defaultOf<T>(setting: SettingRow<T>): T {
  const value = setting.default;
  return typeof value === 'function' ? (value as () => T)() : value;
}

/** A row's default as the help and the README write it; null when it has none to show (none, empty, or the machine's). */
export function shownDefault(flag: SettingFlag): string | null {
  const setting = SETTINGS[flag] as SettingRow<unknown>;
  if (typeof setting.default === 'function') return null;
  const value = setting.default;
  if (setting.show !== undefined) return setting.show(value);
  if (value === null || value === '') return null;
  if (Array.isArray(value)) return value.length === 0 ? null : value.join(',');
  if (typeof value === 'object') return Object.keys(value).length === 0 ? null : JSON.stringify(value);
  return String(value);
}

/** The default of a setting that has one, as text: for the subcommands that take the same flag with the proxy's default. */
export function defaultText(flag: SettingFlag): string {
  const shown = shownDefault(flag);
  if (shown === null) throw new Error(`--${flag} has no default to share`);
  return shown;
}

/** The flags part of `etcd-cache-proxy help`. */
export function describeSettings(): string {
  return SETTING_ROWS.map((setting) => {
    const shown = shownDefault(setting.flag);
    const def = shown === null ? '' : ` (default ${shown})`;
    return `  --${setting.flag.padEnd(22)} ${setting.description}${def}\n  ${' '.repeat(24)} env ${envName(setting.flag)}`;
  }).join('\n');
}
