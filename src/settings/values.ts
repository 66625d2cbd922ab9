// How each setting's text (a flag, an environment variable, a YAML value) is
// read and how a default is written back as text. Parsers throw an Error whose
// message completes "--flag=value: ..." in the list of problems.
import { accessSync, constants } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { parseEndpoint, parseHostPort } from '../etcd/endpoint';
import { readEd25519PrivateKey, readEd25519PublicKey } from '../files/ed25519-key-file';
import type { HostPort, InitialClusterPeer, LogLevel, SnapshotLocation, UpstreamEndpoint, UpstreamUser } from './types';
import { LOG_LEVELS } from './types';

export function oneOf<T extends string>(allowed: readonly T[], value: string): T {
  const match = allowed.find((a) => a === value);
  if (match === undefined) throw new Error(`must be one of ${allowed.join(', ')}`);
  return match;
}

export function parseLogLevel(value: string): LogLevel {
  return oneOf(LOG_LEVELS, value.toLowerCase());
}

export function parseBoolean(value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0' || value === '') return false;
  throw new Error('must be true or false');
}

/** A value that must not be blank: a directory, a hostname, a region. */
export function nonBlank(value: string): string {
  if (value.trim() === '') throw new Error('must not be empty');
  return value;
}

/** A value that must not be the empty string (a prefix: '/' is fine, '' is not). */
export function nonEmpty(value: string): string {
  if (value === '') throw new Error('must not be empty');
  return value;
}

/** A file the proxy will read (a certificate, a key): checked now, so a typo fails at start. */
export function readableFile(value: string): string {
  try {
    accessSync(value, constants.R_OK);
  } catch {
    throw new Error('not a readable file');
  }
  return value;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

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
 * A duration as an operator would write it: the smallest unit that says it
 * in a whole number up to 60 ("60s", "10m", "24h"), else milliseconds.
 */
export function formatDurationMs(ms: number): string {
  for (const unit of ['ms', 's', 'm', 'h']) {
    const count = ms / (DURATION_UNITS_MS[unit] ?? 1);
    if (Number.isInteger(count) && count <= 60) return `${count}${unit}`;
  }
  return `${ms}ms`;
}

/** A parser for a duration of at least `minMs` (`minText` says it as the flag would). */
export function durationOfAtLeast(minMs: number, minText: string): (value: string) => number {
  return (value) => {
    const ms = parseDurationMs(value);
    if (ms < minMs) throw new Error(`must be at least ${minText}`);
    return ms;
  };
}

/** A parser for a whole number (bytes, mostly) of at least `min`; `problem` is the message otherwise. */
export function wholeNumberOfAtLeast(min: number, problem: string): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!Number.isSafeInteger(number) || number < min) throw new Error(problem);
    return number;
  };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function parseEndpointList(value: string): UpstreamEndpoint[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new Error('at least one endpoint is required');
  return items.map(parseEndpoint);
}

/** etcd's --initial-cluster: name=peerURL pairs; a name may repeat for a member with several peer URLs. */
export function parseInitialCluster(value: string): InitialClusterPeer[] {
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

export function parseSrvDomain(value: string): string {
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(value)) throw new Error('not a DNS domain name');
  return value.replace(/\.$/, '');
}

export function parseSrvName(value: string): string {
  if (!/^[A-Za-z0-9-]*$/.test(value)) throw new Error('letters, digits and dashes only');
  return value;
}

export function parseDnsServer(value: string): string {
  const { host, port } = parseHostPort(value);
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
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

export function parseHttpUrl(value: string): string {
  const url = new URL(value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must be an http:// or https:// URL');
  return value;
}

/** key=value pairs, comma-separated; a key given twice is a mistake, not an override. */
export function parseLabels(value: string): Record<string, string> {
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
export function parseVerifyKeyFiles(value: string): string[] {
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

/** A comma list of key prefixes; `leaveOut` says what leaving the option out does instead. */
export function prefixList(leaveOut: string): (value: string) => string[] {
  return (value) => {
    const prefixes = value.split(',').filter((prefix) => prefix !== '');
    if (prefixes.length === 0) throw new Error(`at least one non-empty prefix is required (leave the option out to ${leaveOut})`);
    return prefixes;
  };
}

export function parseClientUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('not a URL (expected http://host:port)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme must be http or https');
  return value;
}

export function parseMetricsAddr(value: string): HostPort {
  return parseHostPort(value.replace(/^http:\/\//, '').replace(/\/$/, ''));
}

export function parseHttpErrorStatus(value: string): number {
  const code = Number(value);
  if (!/^\d{3}$/.test(value) || code < 400 || code > 599) throw new Error('must be an HTTP error status, 400 to 599');
  return code;
}

export function parseUpstreamUser(value: string): UpstreamUser {
  const colon = value.indexOf(':');
  if (colon <= 0) throw new Error('must be name:password');
  return { name: value.slice(0, colon), password: value.slice(colon + 1) };
}

/** A private key file, checked to hold one Ed25519 private key. */
export function privateKeyFile(value: string): string {
  readEd25519PrivateKey(value);
  return value;
}

export function parseWorkers(value: string): number {
  if (value === 'auto') return availableParallelism();
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1024) throw new Error('must be auto or a whole number of processes, 1 to 1024');
  return Number(value);
}
