import { isIP } from 'node:net';
import type { HostPort, UpstreamEndpoint } from '../settings/types';

// The types live with the other settings types; they are re-exported for the etcd-side callers.
export type { HostPort, UpstreamEndpoint };

/** Parses "host:port", "[v6]:port" or a bare port; throws with a message fit for a config error. */
export function parseHostPort(value: string): HostPort {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  const plain = /^([^:]*):(\d+)$/.exec(value);
  const match = bracketed ?? plain;
  if (match === null) throw new Error('expected host:port');
  const host = match[1] === '' ? '0.0.0.0' : (match[1] ?? '');
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('port must be 0..65535');
  if (bracketed !== null && isIP(host) !== 6) throw new Error('bracketed host must be an IPv6 address');
  return { host, port };
}

/** Parses an etcd client URL (http:// or https://host:port, or host:port as etcdctl accepts). */
export function parseEndpoint(value: string): UpstreamEndpoint {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`'${value}' is not a URL (expected http://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`'${value}': scheme must be http or https`);
  if (url.pathname !== '/' && url.pathname !== '') throw new Error(`'${value}': a client URL has no path`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port === '' ? 2379 : Number(url.port);
  const target = isIP(host) === 6 ? `ipv6:[${host}]:${port}` : isIP(host) === 4 ? `ipv4:${host}:${port}` : `dns:${host}:${port}`;
  const tls = url.protocol === 'https:';
  return { url: `${tls ? 'https' : 'http'}://${url.host}`, host, port, target, tls };
}
