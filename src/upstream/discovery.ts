import { Resolver } from 'node:dns/promises';
import { get as httpGet, type RequestOptions } from 'node:http';
import { get as httpsGet } from 'node:https';
import { isIP } from 'node:net';
import type { DiscoverySource } from '../settings/types';
import { parseEndpoint, type UpstreamEndpoint } from '../etcd/endpoint';
import { tlsOptions, type TlsFiles } from '../tls/upstream-tls';

/** A peer that does not answer /members within this long is skipped for the next. */
const PEER_TIMEOUT_MS = 2_000;

/** What discovery found: endpoints to dial, and URLs it had to leave out, with why. */
export interface Discovered {
  readonly endpoints: UpstreamEndpoint[];
  readonly skipped: { readonly url: string; readonly reason: string }[];
}

/** Client URLs to endpoints the pool can dial; malformed ones are reported, not dialled. */
export function toEndpoints(urls: readonly string[]): Discovered {
  const endpoints: UpstreamEndpoint[] = [];
  const skipped: { url: string; reason: string }[] = [];
  for (const url of urls) {
    try {
      endpoints.push(parseEndpoint(url));
    } catch (error) {
      skipped.push({ url, reason: error instanceof Error ? error.message : String(error) });
    }
  }
  return { endpoints, skipped };
}

/**
 * The members' client URLs from the configured source, in etcd's order of
 * precedence: DNS SRV records, then the peers of --initial-cluster, then the
 * static --endpoints. Throws when the source gave nothing usable.
 */
export async function discover(source: DiscoverySource, endpoints: readonly UpstreamEndpoint[], tls: TlsFiles): Promise<Discovered> {
  switch (source.kind) {
    case 'srv':
      return fromSrv(source);
    case 'initial-cluster':
      return fromPeers(source.peers.map((peer) => peer.peerUrl), tls);
    case 'endpoints':
      return { endpoints: [...endpoints], skipped: [] };
  }
}

/**
 * etcd's client SRV names: _etcd-client[-<name>]._tcp.<domain> for plain
 * members, _etcd-client-ssl[-<name>]._tcp.<domain> for TLS ones. With a DNS
 * server of its own (--discovery-dns-server), targets are resolved through it
 * too, since the system resolver would not know them.
 */
async function fromSrv(source: Extract<DiscoverySource, { kind: 'srv' }>): Promise<Discovered> {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (source.dnsServer !== null) resolver.setServers([source.dnsServer]);
  const suffix = source.serviceName === '' ? '' : `-${source.serviceName}`;
  const urls: string[] = [];
  const failures: string[] = [];
  for (const [service, scheme] of [
    [`_etcd-client-ssl${suffix}`, 'https'],
    [`_etcd-client${suffix}`, 'http'],
  ] as const) {
    const name = `${service}._tcp.${source.domain}`;
    let records;
    try {
      records = await resolver.resolveSrv(name);
    } catch (error) {
      failures.push(`${name}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      continue;
    }
    for (const record of records) {
      const host = source.dnsServer === null || isIP(record.name) !== 0 ? record.name : await resolveHost(resolver, record.name);
      if (host === null) {
        failures.push(`${record.name}: no address`);
        continue;
      }
      urls.push(`${scheme}://${isIP(host) === 6 ? `[${host}]` : host}:${record.port}`);
    }
  }
  const found = toEndpoints(urls);
  if (found.endpoints.length === 0) throw new Error(`DNS SRV discovery for ${source.domain} found no usable member (${[...failures, ...found.skipped.map((s) => s.reason)].join('; ')})`);
  return found;
}

async function resolveHost(resolver: Resolver, name: string): Promise<string | null> {
  for (const family of [resolver.resolve4.bind(resolver), resolver.resolve6.bind(resolver)]) {
    try {
      const [address] = await family(name);
      if (address !== undefined) return address;
    } catch {
      // try the other family
    }
  }
  return null;
}

/** One GET of a JSON document, over TLS with the upstream material for https (a peer port usually wants a client certificate). */
function getJson(url: string, tls: TlsFiles): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const secure = url.startsWith('https:');
    const options: RequestOptions = secure ? { ...tlsOptions(tls), timeout: PEER_TIMEOUT_MS } : { timeout: PEER_TIMEOUT_MS };
    const request = (secure ? httpsGet : httpGet)(url, options, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        if (response.statusCode !== 200) return reject(new Error(`HTTP ${response.statusCode ?? '?'}`));
        try {
          resolve(JSON.parse(body));
        } catch {
          reject(new Error('answer is not JSON'));
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${PEER_TIMEOUT_MS} ms`)));
    request.on('error', reject);
  });
}

interface PeerMember {
  readonly name?: string;
  readonly clientURLs?: readonly string[];
}

/**
 * Asks each peer URL, in turn, for the member list on etcd's peer port
 * (GET /members, as etcd's v2 proxy does): the first answer lists every
 * member's client URLs. Members not started yet have none and are skipped.
 */
async function fromPeers(peerUrls: readonly string[], tls: TlsFiles): Promise<Discovered> {
  const failures: string[] = [];
  for (const peerUrl of peerUrls) {
    let members: PeerMember[];
    try {
      const body = await getJson(`${peerUrl}/members`, tls);
      if (!Array.isArray(body)) throw new Error('answer is not a member list');
      members = body as PeerMember[];
    } catch (error) {
      failures.push(`${peerUrl}: ${error instanceof Error ? error.message : String(error)}`);
      continue;
    }
    const found = toEndpoints(members.flatMap((member) => firstUsable(member.clientURLs ?? [])));
    if (found.endpoints.length > 0) return found;
    failures.push(`${peerUrl}: no member with a usable client URL`);
  }
  throw new Error(`no peer of --initial-cluster answered with the members (${failures.join('; ')})`);
}

/** One URL per member (its first, as etcd lists them): a member listing several client URLs is one member, not several. */
export function firstUsable(clientUrls: readonly string[]): string[] {
  return clientUrls.slice(0, 1);
}
