// The flag parser of `etcd-cache-proxy start`: resolves defaults < config
// file < environment < flags for every row of the settings table, checks what
// the rows cannot check alone (settings that go together), and hands out one
// frozen ProxyConfig. Only the top (cli, proxy, workers) imports this file;
// every other layer takes its types from settings/types.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type * as Yaml from 'yaml';
import { defaultOf, describeSettings, envName, fileKey, SETTING_ROWS, type SettingFlag, type SettingValues } from './settings/table';
import type { DiscoverySource, HostPort, ProxyConfig, ResolverSettings, ServerTlsConfig } from './settings/types';
import { formatHostPort } from './settings/values';

export type { ProxyConfig } from './settings/types';
export { parseDurationMs, formatHostPort } from './settings/values';

/** Raised with every problem found, so an operator fixes them in one go. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Raw = string;

/** The keys a config file may hold: every setting's YAML key; anything else is refused. */
const FILE_KEYS = new Set<string>(SETTING_ROWS.flatMap((setting) => fileKey(setting.flag) ?? []));

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

  /** The text each setting was given, by the source that wins; a setting no source gives is absent (its row's default applies). */
  const given = new Map<SettingFlag, Raw>();
  for (const { flag } of SETTING_ROWS) {
    const value = flags.get(flag) ?? env.get(flag) ?? file.get(flag);
    if (value !== undefined) given.set(flag, value);
  }
  const config = buildConfig(readValues(given, problems), given, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** Each row's value: its parsed text where one was given, else its default; a text its parser refuses is a problem (and the default stands in). */
function readValues(given: ReadonlyMap<SettingFlag, Raw>, problems: string[]): SettingValues {
  const values: Partial<Record<SettingFlag, unknown>> = {};
  for (const setting of SETTING_ROWS) {
    const { flag } = setting;
    const text = given.get(flag);
    if (text !== undefined) {
      try {
        values[flag] = setting.parse(text);
        continue;
      } catch (error) {
        problems.push(`--${flag}=${text}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    values[flag] = defaultOf(setting);
  }
  return values as SettingValues;
}

function readFlags(argv: readonly string[], problems: string[]): Map<string, Raw> {
  const result = new Map<string, Raw>();
  const options = Object.fromEntries(SETTING_ROWS.map((s) => [s.flag, { type: s.boolean === true ? ('boolean' as const) : ('string' as const), multiple: true }]));
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
    const list = SETTING_ROWS.some((setting) => setting.flag === name && setting.list === true);
    result.set(name, list ? values.join(',') : String(values[values.length - 1]));
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
  for (const { flag } of SETTING_ROWS) {
    const value = env[envName(flag)];
    if (value !== undefined && value !== '') result.set(flag, value);
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
    // Loaded here, not at start: the YAML parser costs a process 2-3 MB of memory, which one without a config file never needs.
    const { parse: parseYaml } = require('yaml') as typeof Yaml;
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
    if (!FILE_KEYS.has(key)) {
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

/** The rows' values put together as ProxyConfig, with the checks between settings that go together. */
function buildConfig(values: SettingValues, given: ReadonlyMap<SettingFlag, Raw>, problems: string[]): ProxyConfig {
  const mirrorPrefixes = values['mirror-prefix'];
  const grayscale = { prefixes: values['grayscale-prefix'], hostname: values['grayscale-hostname'], labels: values['grayscale-label'] };
  if (mirrorPrefixes.length > 0 && !mirrorPrefixes.includes('')) {
    for (const prefix of grayscale.prefixes) {
      if (!mirrorPrefixes.some((mirrored) => prefix.startsWith(mirrored))) problems.push(`--grayscale-prefix=${prefix}: not under any --mirror-prefix (only the mirror can withhold a version)`);
    }
  }
  const snapshotUrl = values['snapshot-url'];
  const snapshotPublish = values['snapshot-publish'];
  if (snapshotPublish && snapshotUrl === null) problems.push('--snapshot-publish needs --snapshot-url');
  if (values['snapshot-sign-key'] !== null && !snapshotPublish) problems.push('--snapshot-sign-key has no effect without --snapshot-publish');
  if (values['snapshot-verify-key'].length > 0 && snapshotUrl === null) problems.push('--snapshot-verify-key has no effect without --snapshot-url');
  const upstreamTls = { caFile: values.cacert, certFile: values.cert, keyFile: values.key, insecureSkipVerify: values['insecure-skip-tls-verify'] };
  if ((upstreamTls.certFile === null) !== (upstreamTls.keyFile === null)) problems.push('--cert and --key go together');
  return {
    resolver: buildResolver(values, problems),
    upstreamTls,
    upstreamUser: values.user,
    authRefreshIntervalMs: values['auth-refresh-interval'],
    authOfflineLogin: values['auth-offline-login'],
    authOfflineMaxAgeMs: values['auth-offline-max-age'],
    authJwtPubKey: values['auth-jwt-pub-key'],
    serverTls: buildServerTls(values, problems),
    snapshotDir: values['snapshot-dir'],
    snapshotIntervalMs: values['snapshot-interval'],
    apisixPrefix: values['apisix-prefix'],
    snapshotUrl,
    objectStore: { endpoint: values['s3-endpoint'], region: values['s3-region'], forcePathStyle: values['s3-force-path-style'], requestChecksum: values['s3-request-checksum'] },
    snapshotPublish,
    snapshotKeep: values['snapshot-keep'],
    snapshotSignKey: values['snapshot-sign-key'],
    snapshotVerifyKeys: values['snapshot-verify-key'],
    snapshotMaxBytes: values['snapshot-max-bytes'],
    endpoints: values.endpoints,
    discovery: buildDiscovery(values, given, problems),
    syncIntervalMs: values['sync-interval'],
    listenAddr: values['listen-addr'],
    advertiseClientUrl: values['advertise-client-url'],
    dataDir: values['data-dir'],
    metricsAddr: values['metrics-addr'],
    logLevel: values['log-level'],
    shutdownGraceMs: values['shutdown-grace'],
    mode: values.mode,
    upstreamTimeoutMs: values['upstream-timeout'],
    staleReads: values['stale-reads'],
    writeRejectHttpStatus: values['write-reject-http-status'],
    mirrorPrefixes,
    history: values.history,
    listBytesPerSecond: values['list-bytes-per-second'],
    consistencyCheckBytesPerSecond: values['consistency-check-bytes-per-second'],
    consistencyCheckIntervalMs: values['consistency-check-interval'],
    watchProgressNotifyIntervalMs: values['watch-progress-notify-interval'],
    watchBufferBytes: values['watch-buffer-bytes'],
    responseCacheBytes: values['response-cache-bytes'],
    grayscale,
    workers: values.workers,
    configFile: values['config-file'],
  };
}

/** The first discovery source set, in etcd's order: SRV, then --initial-cluster, then --endpoints. */
function buildDiscovery(values: SettingValues, given: ReadonlyMap<SettingFlag, Raw>, problems: string[]): DiscoverySource {
  const domain = values['discovery-srv'];
  if (domain !== null) return { kind: 'srv', domain, serviceName: values['discovery-srv-name'], dnsServer: values['discovery-dns-server'] };
  for (const needsSrv of ['discovery-srv-name', 'discovery-dns-server'] as const) {
    if (given.has(needsSrv)) problems.push(`--${needsSrv} has no effect without --discovery-srv`);
  }
  const peers = values['initial-cluster'];
  if (peers !== null) return { kind: 'initial-cluster', peers };
  return { kind: 'endpoints' };
}

function buildServerTls(values: SettingValues, problems: string[]): ServerTlsConfig | null {
  const certFile = values['cert-file'];
  const keyFile = values['key-file'];
  const trustedCaFile = values['trusted-ca-file'];
  if ((certFile === null) !== (keyFile === null)) problems.push('--cert-file and --key-file go together');
  if (trustedCaFile !== null && certFile === null) problems.push('--trusted-ca-file needs --cert-file and --key-file (client certificates are checked over TLS)');
  return certFile !== null && keyFile !== null ? { certFile, keyFile, trustedCaFile } : null;
}

/** etcd grpc-proxy's checks, with its words' meaning: a prefix needs a TTL, a TTL needs a prefix. */
function buildResolver(values: SettingValues, problems: string[]): ResolverSettings | null {
  const prefix = values['resolver-prefix'];
  const ttlSeconds = values['resolver-ttl'];
  if (prefix !== null && ttlSeconds === null) problems.push('--resolver-prefix needs --resolver-ttl (seconds, at least 1), as etcd grpc-proxy does');
  if (prefix === null && ttlSeconds !== null) problems.push('--resolver-ttl has no effect without --resolver-prefix');
  return prefix === null || ttlSeconds === null ? null : { prefix, ttlSeconds };
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

/** The flags part of `etcd-cache-proxy help`, from the settings table. */
export function describeOptions(): string {
  return describeSettings();
}
