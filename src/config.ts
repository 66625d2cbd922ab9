import { accessSync, constants, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { parseEndpoint, parseHostPort, type HostPort, type UpstreamEndpoint } from './etcd/endpoint';
import { readEd25519PrivateKey, readEd25519PublicKey } from './files/ed25519-key-file';

/** Log levels pino understands, in etcd's spelling where the two agree. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const PROXY_MODES = ['readwrite', 'readonly'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];
export const STALE_READS = ['allow', 'deny'] as const;
export type StaleReads = (typeof STALE_READS)[number];

/** The resolved, validated, frozen configuration of one proxy process. */
export interface ProxyConfig {
  /** Upstream etcd client URLs, in the order given (the default when no discovery source is set). */
  readonly endpoints: readonly UpstreamEndpoint[];
  /** Where the member list comes from: the first source set of --discovery-srv, --initial-cluster, --endpoints. */
  readonly discovery: DiscoverySource;
  /** How often the member list is refreshed from the cluster (Cluster.MemberList). */
  readonly syncIntervalMs: number;
  /** Where gRPC and HTTP clients connect (one port for both). */
  readonly listenAddr: HostPort;
  /**
   * The client URL that MemberList reports for every member; null means
   * "derive it from the bound listen address" (see advertisedUrlFor).
   */
  readonly advertiseClientUrl: string | null;
  readonly dataDir: string;
  /** A second listener that serves only /metrics; null when not asked for. */
  readonly metricsAddr: HostPort | null;
  readonly logLevel: LogLevel;
  /** How long a graceful stop waits for in-flight calls before cutting them. */
  readonly shutdownGraceMs: number;
  /** readonly: every write is refused with UNIMPLEMENTED. */
  readonly mode: ProxyMode;
  /** The upstream is lost once no member has answered for this long. */
  readonly upstreamTimeoutMs: number;
  /** While the upstream is lost: answer reads from the mirror (allow) or refuse them (deny). */
  readonly staleReads: StaleReads;
  /** HTTP status of a write the proxy refuses on the JSON gateway (read-only, upstream lost): 501 unless set. */
  readonly writeRejectHttpStatus: number;
  /** Key prefixes the mirror holds; empty: the whole keyspace. */
  readonly mirrorPrefixes: readonly string[];
  /** Revisions the event log keeps behind the mirror revision. */
  readonly history: number;
  /** How often a watch created with progress_notify hears the revision when nothing else happened. */
  readonly watchProgressNotifyIntervalMs: number;
  /** Bytes a watch stream may have waiting for its client before its watches are cancelled as too slow. */
  readonly watchBufferBytes: number;
  /** Memory for encoded answers of repeated mirror reads (0: none kept). */
  readonly responseCacheBytes: number;
  /** Serving processes sharing the client port; 1: this process serves (no workers). */
  readonly workers: number;
  /** Configuration grayscale: under these prefixes, versions marked for other machines are not shown here. */
  readonly grayscale: GrayscaleSettings;
  /** The least time between two steps of the rolling consistency check; 0 turns the check off. */
  readonly consistencyCheckIntervalMs: number;
  /** What the consistency check may read from the upstream, averaged. */
  readonly consistencyCheckBytesPerSecond: number;
  /** The fastest a list of the keyspace (first sync, after a compaction) reads from the upstream; 0: no limit. */
  readonly listBytesPerSecond: number;
  /** Where periodic snapshots (and the APISIX export) are written; null: none. */
  readonly snapshotDir: string | null;
  readonly snapshotIntervalMs: number;
  /** The etcd prefix APISIX keeps its configuration under, for the apisix.yaml export. */
  readonly apisixPrefix: string;
  /** Published snapshots in object storage (s3://bucket/prefix); null: none. */
  readonly snapshotUrl: SnapshotLocation | null;
  readonly objectStore: ObjectStoreOptions;
  /** Publish this proxy's snapshot to --snapshot-url every --snapshot-interval while the mirror moves. */
  readonly snapshotPublish: boolean;
  /** How many published snapshots the bucket keeps. */
  readonly snapshotKeep: number;
  /** Ed25519 private key (PEM, PKCS#8) a publisher signs its manifests with; null: unsigned. Read at start only. */
  readonly snapshotSignKey: string | null;
  /** Ed25519 public keys (PEM, SPKI; one per file): a fetched snapshot must be signed by one of them; empty: unsigned ones are taken. Read at start only. */
  readonly snapshotVerifyKeys: readonly string[];
  /** The largest published snapshot fetched; a bigger one is refused before it is downloaded. */
  readonly snapshotMaxBytes: number;
  /** TLS to https upstream members. */
  readonly upstreamTls: UpstreamTlsConfig;
  /** The user the mirror logs in as when etcd has auth on (read permission on the mirrored keys); null: none. */
  readonly upstreamUser: UpstreamUser | null;
  /** How often what a user may read is asked of etcd again while the user is active. */
  readonly authRefreshIntervalMs: number;
  /** While etcd is down, answer logins that succeeded upstream within `authOfflineMaxAgeMs`. */
  readonly authOfflineLogin: boolean;
  readonly authOfflineMaxAgeMs: number;
  /** etcd's public key for its JWT tokens (PEM), so the proxy checks them itself; null: none. */
  readonly authJwtPubKey: string | null;
  /** TLS for clients on the client port; null: plaintext. */
  readonly serverTls: ServerTlsConfig | null;
  /** The YAML file the values were read from, if any. */
  readonly configFile: string | null;
}

/** Where grayscale marks are honoured (grayscale/), and who this proxy is to them. */
export interface GrayscaleSettings {
  /** Key prefixes whose values may carry a mark; none: grayscale is off. */
  readonly prefixes: readonly string[];
  readonly hostname: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface UpstreamTlsConfig {
  readonly caFile: string | null;
  readonly certFile: string | null;
  readonly keyFile: string | null;
  readonly insecureSkipVerify: boolean;
}

export interface UpstreamUser {
  readonly name: string;
  readonly password: string;
}

export interface ServerTlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  /** Set: clients must present a certificate signed by it. */
  readonly trustedCaFile: string | null;
}

/** The member list's origin, in etcd's order of precedence. */
export type DiscoverySource =
  | { readonly kind: 'srv'; readonly domain: string; readonly serviceName: string; readonly dnsServer: string | null }
  | { readonly kind: 'initial-cluster'; readonly peers: readonly { readonly name: string; readonly peerUrl: string }[] }
  | { readonly kind: 'endpoints' };

export const DEFAULT_LISTEN_ADDR = '127.0.0.1:23790';
export const DEFAULT_ENDPOINTS = 'http://127.0.0.1:2379';
export const DEFAULT_DATA_DIR = 'etcd-cache-proxy.data';
const ENV_PREFIX = 'ETCD_CACHE_PROXY_';
/**
 * 256 MiB: a gateway's whole configuration is kilobytes to a few megabytes
 * (and etcd's own request limit is 1.5 MiB per value), so this leaves two
 * orders of magnitude of room while a planted object cannot fill the disk
 * or hold a proxy downloading for long during an outage.
 */
export const DEFAULT_SNAPSHOT_MAX_BYTES = 256 * 1024 * 1024;

/** Raised with every problem found, so an operator fixes them in one go. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Raw = string;

interface OptionSpec {
  /** Flag name without dashes; also the YAML key. */
  readonly name: string;
  readonly description: string;
  readonly defaultValue?: string;
  /** A switch: given without a value on the command line ('true'/'false' in the environment and the file). */
  readonly boolean?: true;
}

/** Every option the proxy accepts; names follow `etcd grpc-proxy` where one exists. */
export const OPTIONS: readonly OptionSpec[] = [
  { name: 'endpoints', description: `comma-separated upstream etcd client URLs (default ${DEFAULT_ENDPOINTS} unless a discovery option is set)` },
  { name: 'initial-cluster', description: 'name=peerURL,... of the cluster: its members are asked for their client URLs (beats --endpoints)' },
  { name: 'discovery-srv', description: 'domain whose _etcd-client._tcp SRV records list the members (beats --initial-cluster)' },
  { name: 'discovery-srv-name', description: 'suffix of the SRV service name: _etcd-client-<name>._tcp' },
  { name: 'discovery-dns-server', description: 'host:port of the DNS server for --discovery-srv (default: the system resolver)' },
  { name: 'sync-interval', description: "how often the member list is refreshed from the cluster", defaultValue: '30s' },
  { name: 'listen-addr', description: 'host:port for gRPC and HTTP clients', defaultValue: DEFAULT_LISTEN_ADDR },
  {
    name: 'advertise-client-url',
    description: 'client URL reported for every member in MemberList (default: http://<listen-addr>)',
  },
  { name: 'data-dir', description: 'directory for the proxy state', defaultValue: DEFAULT_DATA_DIR },
  { name: 'metrics-addr', description: 'extra listener for /metrics only, host:port or http://host:port' },
  { name: 'log-level', description: `one of ${LOG_LEVELS.join(', ')}`, defaultValue: 'info' },
  { name: 'mode', description: `${PROXY_MODES.join(' or ')}; readonly refuses every write`, defaultValue: 'readwrite' },
  { name: 'upstream-timeout', description: 'the upstream is lost when no member answered for this long', defaultValue: '3s' },
  { name: 'stale-reads', description: 'while the upstream is lost: allow (serve the mirror, marked stale) or deny', defaultValue: 'allow' },
  { name: 'write-reject-http-status', description: 'HTTP status of a write refused on the JSON gateway (read-only mode, upstream lost), 400-599', defaultValue: '501' },
  { name: 'mirror-prefix', description: 'key prefix to mirror, comma-separated or repeated (default: the whole keyspace)' },
  { name: 'grayscale-prefix', description: 'key prefix whose JSON values may carry annotations.grayscale, applied only on the machines it names; comma-separated or repeated (default: none, off)' },
  { name: 'grayscale-hostname', description: "this machine's name in grayscale marks' hostname lists (default: the machine's hostname)" },
  { name: 'grayscale-label', description: "key=value this machine matches in grayscale marks' labels; comma-separated or repeated" },
  { name: 'history', description: 'revisions of events the mirror keeps for replay and old reads', defaultValue: '100000' },
  { name: 'watch-progress-notify-interval', description: "progress notifications for watches that asked for them (etcd's default)", defaultValue: '10m' },
  { name: 'watch-buffer-bytes', description: 'bytes a watch stream may have waiting for a slow client before its watches are cancelled', defaultValue: '33554432' },
  { name: 'response-cache-bytes', description: 'memory for encoded answers of repeated mirror reads, reused while their keys are unchanged (0: off)', defaultValue: '134217728' },
  { name: 'consistency-check-interval', description: 'the least time between two pages of the rolling comparison of the mirror with the upstream (0: never)', defaultValue: '60s' },
  { name: 'consistency-check-bytes-per-second', description: 'what the consistency check may read from the upstream, averaged', defaultValue: '1024' },
  { name: 'list-bytes-per-second', description: 'the fastest a list of the keyspace (first sync, or after a compaction) reads from the upstream (0: no limit)', defaultValue: '8388608' },
  { name: 'snapshot-dir', description: 'directory for periodic snapshots of the mirror and an APISIX apisix.yaml export (default: none)' },
  { name: 'snapshot-interval', description: 'how often a snapshot is written to --snapshot-dir', defaultValue: '5m' },
  { name: 'apisix-prefix', description: 'etcd prefix of the APISIX configuration exported to apisix.yaml', defaultValue: '/apisix' },
  { name: 'snapshot-url', description: 'object storage for published snapshots, s3://bucket/prefix: served from when etcd is unreachable and the mirror is empty or older (default: none)' },
  { name: 'snapshot-publish', description: 'publish the mirror\'s snapshot and apisix.yaml to --snapshot-url every --snapshot-interval while it moves', boolean: true },
  { name: 'snapshot-keep', description: 'published snapshots kept in --snapshot-url; older ones are deleted', defaultValue: '10' },
  { name: 'snapshot-sign-key', description: "with --snapshot-publish: Ed25519 private key (PEM) that signs what is published ('etcd-cache-proxy snapshot keygen' makes one)" },
  { name: 'snapshot-verify-key', description: 'Ed25519 public key files (PEM, one key each), comma-separated or repeated: a published snapshot is served only if one of them signed it (default: none, unsigned snapshots are taken)' },
  { name: 'snapshot-max-bytes', description: 'the largest published snapshot fetched; a bigger one is refused before it is downloaded', defaultValue: String(DEFAULT_SNAPSHOT_MAX_BYTES) },
  { name: 's3-endpoint', description: 'an S3-compatible endpoint URL (default: AWS S3 for --s3-region)' },
  { name: 's3-region', description: 'region of the bucket', defaultValue: 'us-east-1' },
  { name: 's3-force-path-style', description: 'address the bucket as endpoint/bucket, as most S3-compatible stores want', boolean: true },
  { name: 's3-request-checksum', description: 'when-supported or when-required: some S3-compatible stores take request checksums only where S3 requires them', defaultValue: 'when-supported' },
  { name: 'cacert', description: 'CA bundle that signs the upstream members\' certificates (https endpoints; default: the system CAs)' },
  { name: 'cert', description: 'client certificate the proxy presents to https upstream members' },
  { name: 'key', description: 'key of --cert' },
  { name: 'insecure-skip-tls-verify', description: 'accept any upstream certificate (testing only)', boolean: true },
  { name: 'user', description: "name:password the mirror logs in with when etcd has auth on (etcdctl's flag); it needs read permission on the mirrored keys, never root" },
  { name: 'auth-refresh-interval', description: "with auth on: how long etcd's word on a token and on what its user may read holds; each token and user in use is checked again within it", defaultValue: '60s' },
  { name: 'auth-offline-login', description: 'while etcd is down, answer logins whose name and password succeeded upstream recently (a salted scrypt hash is kept in the data dir)', boolean: true },
  { name: 'auth-offline-max-age', description: 'with --auth-offline-login: how recent that upstream login must be; a token issued offline ends when that login is this old', defaultValue: '24h' },
  { name: 'auth-jwt-pub-key', description: "etcd's public key (PEM) for its JWT tokens (RS*, PS*, ES*, EdDSA): the proxy then checks them itself" },
  { name: 'cert-file', description: 'certificate for clients: the client port then speaks TLS only (gRPC and HTTP)' },
  { name: 'key-file', description: 'key of --cert-file' },
  { name: 'trusted-ca-file', description: 'CA bundle for client certificates: clients must present one it signed' },
  { name: 'workers', description: "serving processes sharing the client port, each using a core (auto: one per CPU this process may use); the mirror is kept by one more", defaultValue: '1' },
  { name: 'shutdown-grace', description: 'how long a stop waits for in-flight calls (e.g. 5s, 500ms)', defaultValue: '5s' },
  { name: 'config-file', description: 'YAML file whose keys are these flag names' },
];

const OPTION_NAMES = new Set(OPTIONS.map((o) => o.name));
/** Options whose value is a comma-separated list, which a repeated flag extends. */
const LIST_OPTIONS = new Set(['endpoints', 'mirror-prefix', 'initial-cluster', 'grayscale-prefix', 'grayscale-label', 'snapshot-verify-key']);

export function envName(option: string): string {
  return ENV_PREFIX + option.toUpperCase().replace(/-/g, '_');
}

export interface ConfigSources {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Reads the config file; injectable so unit tests need no disk. */
  readonly readFile?: (path: string) => string;
}

/**
 * Resolves defaults < config file < environment < flags, validates every
 * value, and returns a frozen config, or throws one ConfigError listing all
 * problems.
 */
export function loadConfig(sources: ConfigSources): ProxyConfig {
  const problems: string[] = [];
  const flags = readFlags(sources.argv, problems);
  const env = readEnv(sources.env);
  const configFile = flags.get('config-file') ?? env.get('config-file') ?? null;
  const file = configFile === null ? new Map<string, Raw>() : readConfigFile(configFile, sources, problems);

  const raw = new Map<string, Raw>();
  for (const option of OPTIONS) {
    const value = flags.get(option.name) ?? env.get(option.name) ?? file.get(option.name) ?? option.defaultValue;
    if (value !== undefined) raw.set(option.name, value);
  }
  const config = buildConfig(raw, configFile, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

function readFlags(argv: readonly string[], problems: string[]): Map<string, Raw> {
  const result = new Map<string, Raw>();
  const options = Object.fromEntries(OPTIONS.map((o) => [o.name, { type: o.boolean === true ? ('boolean' as const) : ('string' as const), multiple: true }]));
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
  } catch (error) {
    problems.push(describeFlagError(error));
    return result;
  }
  for (const [name, values] of Object.entries(parsed.values)) {
    if (!Array.isArray(values)) continue;
    // A repeated list flag adds to the list; any other repeated flag keeps the last value, as etcd does.
    result.set(name, LIST_OPTIONS.has(name) ? values.join(',') : String(values[values.length - 1]));
  }
  return result;
}

function describeFlagError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1]} (see 'etcd-cache-proxy help')`;
  const positional = /Unexpected argument '([^']+)'/.exec(message);
  if (positional) return `unexpected argument '${positional[1]}'`;
  return message.split('\n')[0] ?? message;
}

function readEnv(env: NodeJS.ProcessEnv): Map<string, Raw> {
  const result = new Map<string, Raw>();
  for (const option of OPTIONS) {
    const value = env[envName(option.name)];
    if (value !== undefined && value !== '') result.set(option.name, value);
  }
  return result;
}

function readConfigFile(path: string, sources: ConfigSources, problems: string[]): Map<string, Raw> {
  const result = new Map<string, Raw>();
  let text: string;
  try {
    text = (sources.readFile ?? ((p: string) => readFileSync(p, 'utf8')))(path);
  } catch (error) {
    problems.push(`config-file ${path}: ${error instanceof Error ? error.message : String(error)}`);
    return result;
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    problems.push(`config-file ${path}: not valid YAML: ${error instanceof Error ? error.message : String(error)}`);
    return result;
  }
  if (document === null || document === undefined) return result;
  if (typeof document !== 'object' || Array.isArray(document)) {
    problems.push(`config-file ${path}: expected a mapping of option names to values`);
    return result;
  }
  for (const [key, value] of Object.entries(document as Record<string, unknown>)) {
    if (!OPTION_NAMES.has(key) || key === 'config-file') {
      problems.push(`config-file ${path}: unknown key '${key}'`);
      continue;
    }
    const text = yamlScalarToRaw(value);
    if (text === null) problems.push(`config-file ${path}: '${key}' must be a string, number or list of strings`);
    else result.set(key, text);
  }
  return result;
}

function yamlScalarToRaw(value: unknown): Raw | null {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(',');
  return null;
}

function buildConfig(raw: Map<string, Raw>, configFile: string | null, problems: string[]): ProxyConfig {
  const attempt = <T>(name: string, fallback: T, parse: (value: string) => T): T => {
    const value = raw.get(name);
    if (value === undefined) return fallback;
    try {
      return parse(value);
    } catch (error) {
      problems.push(`--${name}=${value}: ${error instanceof Error ? error.message : String(error)}`);
      return fallback;
    }
  };
  const endpoints = attempt('endpoints', parseEndpointList(DEFAULT_ENDPOINTS), parseEndpointList);
  const discovery = buildDiscovery(raw, attempt, problems);
  const syncIntervalMs = attempt('sync-interval', 30_000, durationOfAtLeast(100, '100ms'));
  const listenAddr = attempt('listen-addr', { host: '127.0.0.1', port: 23790 }, parseHostPort);
  const advertiseClientUrl = attempt('advertise-client-url', null as string | null, parseClientUrl);
  const metricsAddr = attempt('metrics-addr', null as HostPort | null, parseMetricsAddr);
  const logLevel = attempt('log-level', 'info' as LogLevel, parseLogLevel);
  const shutdownGraceMs = attempt('shutdown-grace', 5000, parseDurationMs);
  const mode = attempt('mode', 'readwrite' as ProxyMode, (value) => oneOf(PROXY_MODES, value));
  const upstreamTimeoutMs = attempt('upstream-timeout', 3000, durationOfAtLeast(100, '100ms'));
  const staleReads = attempt('stale-reads', 'allow' as StaleReads, (value) => oneOf(STALE_READS, value));
  const writeRejectHttpStatus = attempt('write-reject-http-status', 501, (value) => {
    const code = Number(value);
    if (!/^\d{3}$/.test(value) || code < 400 || code > 599) throw new Error('must be an HTTP error status, 400 to 599');
    return code;
  });
  const consistencyCheckIntervalMs = attempt('consistency-check-interval', 60_000, (value) => (value === '0' ? 0 : parseDurationMs(value)));
  const listBytesPerSecond = attempt('list-bytes-per-second', 8 * 1024 * 1024, wholeNumberOfAtLeast(0, 'must be a whole number of bytes per second (0: no limit)'));
  const consistencyCheckBytesPerSecond = attempt('consistency-check-bytes-per-second', 1024, wholeNumberOfAtLeast(1, 'must be a whole number of bytes per second, at least 1'));
  const watchProgressNotifyIntervalMs = attempt('watch-progress-notify-interval', 600_000, durationOfAtLeast(10, '10ms'));
  const watchBufferBytes = attempt('watch-buffer-bytes', 32 * 1024 * 1024, wholeNumberOfAtLeast(65_536, 'must be a whole number of bytes, at least 65536'));
  const responseCacheBytes = attempt('response-cache-bytes', 128 * 1024 * 1024, wholeNumberOfAtLeast(0, 'must be a whole number of bytes (0 turns the cache off)'));
  const history = attempt('history', 100_000, wholeNumberOfAtLeast(1, 'must be a whole number of revisions, at least 1'));
  const mirrorPrefixes = attempt('mirror-prefix', [] as string[], parsePrefixList);
  const workers = attempt('workers', 1, (value) => {
    if (value === 'auto') return availableParallelism();
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1024) throw new Error('must be auto or a whole number of processes, 1 to 1024');
    return Number(value);
  });
  const grayscale: GrayscaleSettings = {
    prefixes: attempt('grayscale-prefix', [] as string[], (value) => {
      const prefixes = value.split(',').filter((prefix) => prefix !== '');
      if (prefixes.length === 0) throw new Error('at least one non-empty prefix is required (leave the option out to turn grayscale off)');
      return prefixes;
    }),
    hostname: attempt('grayscale-hostname', hostname(), (value) => {
      if (value.trim() === '') throw new Error('must not be empty');
      return value;
    }),
    labels: attempt('grayscale-label', {} as Record<string, string>, parseLabels),
  };
  if (mirrorPrefixes.length > 0 && !mirrorPrefixes.includes('')) {
    for (const prefix of grayscale.prefixes) {
      if (!mirrorPrefixes.some((mirrored) => prefix.startsWith(mirrored))) problems.push(`--grayscale-prefix=${prefix}: not under any --mirror-prefix (only the mirror can withhold a version)`);
    }
  }
  const dataDir = attempt('data-dir', DEFAULT_DATA_DIR, (value) => {
    if (value.trim() === '') throw new Error('must not be empty');
    return value;
  });
  const snapshotDir = attempt('snapshot-dir', null as string | null, (value) => {
    if (value.trim() === '') throw new Error('must not be empty');
    return value;
  });
  const snapshotIntervalMs = attempt('snapshot-interval', 300_000, durationOfAtLeast(100, '100ms'));
  const snapshotUrl = attempt('snapshot-url', null as SnapshotLocation | null, parseSnapshotUrl);
  const snapshotPublish = attempt('snapshot-publish', false, parseBoolean);
  const snapshotKeep = attempt('snapshot-keep', 10, wholeNumberOfAtLeast(1, 'must be a whole number of snapshots, at least 1'));
  const s3Endpoint = attempt('s3-endpoint', null as string | null, (value) => {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must be an http:// or https:// URL');
    return value;
  });
  const s3Region = attempt('s3-region', 'us-east-1', (value) => {
    if (value.trim() === '') throw new Error('must not be empty');
    return value;
  });
  const s3ForcePathStyle = attempt('s3-force-path-style', false, parseBoolean);
  const s3RequestChecksum = attempt('s3-request-checksum', 'when-supported' as ObjectStoreOptions['requestChecksum'], (value) => oneOf(['when-supported', 'when-required'] as const, value));
  if (snapshotPublish && snapshotUrl === null) problems.push('--snapshot-publish needs --snapshot-url');
  const snapshotSignKey = attempt('snapshot-sign-key', null as string | null, (value) => {
    readEd25519PrivateKey(value);
    return value;
  });
  if (snapshotSignKey !== null && !snapshotPublish) problems.push('--snapshot-sign-key has no effect without --snapshot-publish');
  const snapshotVerifyKeys = attempt('snapshot-verify-key', [] as string[], parseVerifyKeyFiles);
  if (snapshotVerifyKeys.length > 0 && snapshotUrl === null) problems.push('--snapshot-verify-key has no effect without --snapshot-url');
  const snapshotMaxBytes = attempt('snapshot-max-bytes', DEFAULT_SNAPSHOT_MAX_BYTES, wholeNumberOfAtLeast(1024, 'must be a whole number of bytes, at least 1024'));
  const apisixPrefix = attempt('apisix-prefix', '/apisix', (value) => {
    if (value === '') throw new Error('must not be empty');
    return value;
  });
  const readable = (value: string): string => {
    try {
      accessSync(value, constants.R_OK);
    } catch {
      throw new Error('not a readable file');
    }
    return value;
  };
  const upstreamTls: UpstreamTlsConfig = {
    caFile: attempt('cacert', null as string | null, readable),
    certFile: attempt('cert', null as string | null, readable),
    keyFile: attempt('key', null as string | null, readable),
    insecureSkipVerify: attempt('insecure-skip-tls-verify', false, parseBoolean),
  };
  if ((upstreamTls.certFile === null) !== (upstreamTls.keyFile === null)) problems.push('--cert and --key go together');
  const upstreamUser = attempt('user', null as UpstreamUser | null, (value) => {
    const colon = value.indexOf(':');
    if (colon <= 0) throw new Error('must be name:password');
    return { name: value.slice(0, colon), password: value.slice(colon + 1) };
  });
  const authRefreshIntervalMs = attempt('auth-refresh-interval', 60_000, durationOfAtLeast(100, '100ms'));
  const authOfflineLogin = attempt('auth-offline-login', false, parseBoolean);
  const authOfflineMaxAgeMs = attempt('auth-offline-max-age', 24 * 3_600_000, durationOfAtLeast(1_000, '1s'));
  const authJwtPubKey = attempt('auth-jwt-pub-key', null as string | null, readable);
  const serverCert = attempt('cert-file', null as string | null, readable);
  const serverKey = attempt('key-file', null as string | null, readable);
  const trustedCa = attempt('trusted-ca-file', null as string | null, readable);
  if ((serverCert === null) !== (serverKey === null)) problems.push('--cert-file and --key-file go together');
  if (trustedCa !== null && serverCert === null) problems.push('--trusted-ca-file needs --cert-file and --key-file (client certificates are checked over TLS)');
  const serverTls: ServerTlsConfig | null = serverCert !== null && serverKey !== null ? { certFile: serverCert, keyFile: serverKey, trustedCaFile: trustedCa } : null;
  return {
    upstreamTls,
    upstreamUser,
    authRefreshIntervalMs,
    authOfflineLogin,
    authOfflineMaxAgeMs,
    authJwtPubKey,
    serverTls,
    snapshotDir,
    snapshotIntervalMs,
    apisixPrefix,
    snapshotUrl,
    objectStore: { endpoint: s3Endpoint, region: s3Region, forcePathStyle: s3ForcePathStyle, requestChecksum: s3RequestChecksum },
    snapshotPublish,
    snapshotKeep,
    snapshotSignKey,
    snapshotVerifyKeys,
    snapshotMaxBytes,
    endpoints,
    discovery,
    syncIntervalMs,
    listenAddr,
    advertiseClientUrl,
    dataDir,
    metricsAddr,
    logLevel,
    shutdownGraceMs,
    mode,
    upstreamTimeoutMs,
    staleReads,
    writeRejectHttpStatus,
    mirrorPrefixes,
    history,
    listBytesPerSecond,
    consistencyCheckBytesPerSecond,
    consistencyCheckIntervalMs,
    watchProgressNotifyIntervalMs,
    watchBufferBytes,
    responseCacheBytes,
    grayscale,
    workers,
    configFile,
  };
}

type Attempt = <T>(name: string, fallback: T, parse: (value: string) => T) => T;

function buildDiscovery(raw: Map<string, Raw>, attempt: Attempt, problems: string[]): DiscoverySource {
  const domain = attempt('discovery-srv', null as string | null, (value) => {
    if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(value)) throw new Error('not a DNS domain name');
    return value.replace(/\.$/, '');
  });
  const serviceName = attempt('discovery-srv-name', '', (value) => {
    if (!/^[A-Za-z0-9-]*$/.test(value)) throw new Error('letters, digits and dashes only');
    return value;
  });
  const dnsServer = attempt('discovery-dns-server', null as string | null, (value) => {
    const { host, port } = parseHostPort(value);
    return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  });
  if (domain !== null) return { kind: 'srv', domain, serviceName, dnsServer };
  for (const needsSrv of ['discovery-srv-name', 'discovery-dns-server']) {
    if (raw.has(needsSrv)) problems.push(`--${needsSrv} has no effect without --discovery-srv`);
  }
  const peers = attempt('initial-cluster', null as { name: string; peerUrl: string }[] | null, parseInitialCluster);
  if (peers !== null) return { kind: 'initial-cluster', peers };
  return { kind: 'endpoints' };
}

/** etcd's --initial-cluster: name=peerURL pairs; a name may repeat for a member with several peer URLs. */
function parseInitialCluster(value: string): { name: string; peerUrl: string }[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new Error('expected name=peerURL,...');
  return items.map((item) => {
    const at = item.indexOf('=');
    if (at <= 0) throw new Error(`'${item}' is not name=peerURL`);
    const peerUrl = item.slice(at + 1);
    let url: URL;
    try {
      url = new URL(peerUrl);
    } catch {
      throw new Error(`'${peerUrl}' is not a URL (expected http://host:port)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`'${peerUrl}': scheme must be http or https`);
    return { name: item.slice(0, at), peerUrl: `${url.protocol}//${url.host}` };
  });
}

/** Where snapshots are published: a bucket and a key prefix inside it (no leading or trailing slash; may be empty). */
export interface SnapshotLocation {
  readonly bucket: string;
  readonly prefix: string;
}

/** How the proxy reaches the object store; credentials come from the AWS SDK's own chain, never from configuration. */
export interface ObjectStoreOptions {
  /** Any S3-compatible endpoint; null: AWS's own for the region. */
  readonly endpoint: string | null;
  readonly region: string;
  readonly forcePathStyle: boolean;
  /** Some S3-compatible stores take request checksums only where S3 requires them. */
  readonly requestChecksum: 'when-supported' | 'when-required';
}

/** `s3://bucket/some/prefix` as --snapshot-url takes it; an error names what is wrong. */
export function parseSnapshotUrl(url: string): SnapshotLocation {
  const match = /^s3:\/\/([^/]+)(\/.*)?$/.exec(url.trim());
  if (match === null) throw new Error(`not an s3://bucket/prefix URL: ${url}`);
  const bucket = match[1] ?? '';
  // S3's own rules for bucket names, so a typo fails at start, not at the first upload.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error(`not a valid S3 bucket name: ${bucket}`);
  const prefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket, prefix };
}

function parseBoolean(value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0' || value === '') return false;
  throw new Error('must be true or false');
}

function parseEndpointList(value: string): UpstreamEndpoint[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new Error('at least one endpoint is required');
  return items.map(parseEndpoint);
}

/** key=value pairs, comma-separated; a key given twice is a mistake, not an override. */
function parseLabels(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of value.split(',').filter((item) => item !== '')) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new Error(`${pair}: expected key=value`);
    const key = pair.slice(0, equals);
    if (Object.hasOwn(labels, key)) throw new Error(`label ${key} is given twice`);
    labels[key] = pair.slice(equals + 1);
  }
  return labels;
}

/** At most this many verify keys: a few publishers' keys, with room for a rotation. */
const MAX_VERIFY_KEYS = 32;

/** --snapshot-verify-key: public key files, each checked to hold one Ed25519 public key. */
function parseVerifyKeyFiles(value: string): string[] {
  const files = [...new Set(value.split(',').map((file) => file.trim()).filter((file) => file !== ''))];
  if (files.length === 0) throw new Error('at least one key file is required (leave the option out to take unsigned snapshots)');
  if (files.length > MAX_VERIFY_KEYS) throw new Error(`at most ${MAX_VERIFY_KEYS} key files`);
  const problems: string[] = [];
  for (const file of files) {
    try {
      readEd25519PublicKey(file);
    } catch (error) {
      problems.push(`${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (problems.length > 0) throw new Error(problems.join('; '));
  return files;
}

function parsePrefixList(value: string): string[] {
  const prefixes = value.split(',').filter((prefix) => prefix !== '');
  if (prefixes.length === 0) throw new Error('at least one non-empty prefix is required (leave the option out to mirror everything)');
  return prefixes;
}

function parseClientUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('not a URL (expected http://host:port)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme must be http or https');
  return value;
}

function parseMetricsAddr(value: string): HostPort {
  return parseHostPort(value.replace(/^http:\/\//, '').replace(/\/$/, ''));
}

function parseLogLevel(value: string): LogLevel {
  return oneOf(LOG_LEVELS, value.toLowerCase());
}

function oneOf<T extends string>(allowed: readonly T[], value: string): T {
  const match = allowed.find((a) => a === value);
  if (match === undefined) throw new Error(`must be one of ${allowed.join(', ')}`);
  return match;
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A parser for a duration of at least `minMs` (`minText` says it as the flag would). */
function durationOfAtLeast(minMs: number, minText: string): (value: string) => number {
  return (value) => {
    const ms = parseDurationMs(value);
    if (ms < minMs) throw new Error(`must be at least ${minText}`);
    return ms;
  };
}

/** A parser for a whole number (bytes, mostly) of at least `min`; `problem` is the message otherwise. */
function wholeNumberOfAtLeast(min: number, problem: string): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!Number.isSafeInteger(number) || number < min) throw new Error(problem);
    return number;
  };
}

/** Go-style durations, as etcd's flags take them: "500ms", "3s", "1m30s". */
export function parseDurationMs(value: string): number {
  const pattern = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = pattern.exec(value); match !== null; match = pattern.exec(value)) {
    total += Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? ''] ?? 0);
    consumed = pattern.lastIndex;
  }
  if (consumed === 0 || consumed !== value.length) throw new Error('not a duration (expected e.g. 500ms, 3s, 1m)');
  return total;
}

/**
 * The default advertised URL: the address clients on this machine dial. A
 * wildcard listen address is not dialable, so loopback stands in for it.
 */
export function advertisedUrlFor(configured: string | null, bound: HostPort, tls = false): string {
  if (configured !== null) return configured;
  const wildcard = bound.host === '0.0.0.0' || bound.host === '::';
  return `${tls ? 'https' : 'http'}://${formatHostPort({ host: wildcard ? '127.0.0.1' : bound.host, port: bound.port })}`;
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function describeOptions(): string {
  return OPTIONS.map((o) => {
    const def = o.defaultValue === undefined ? '' : ` (default ${o.defaultValue})`;
    return `  --${o.name.padEnd(22)} ${o.description}${def}\n  ${' '.repeat(24)} env ${envName(o.name)}`;
  }).join('\n');
}
