import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import { InterceptingCall, type Interceptor, type ServiceError } from '@grpc/grpc-js';
import type { HostPort, UpstreamEndpoint } from '../etcd/endpoint';

/**
 * Every call this proxy sends upstream carries its instance ID in this
 * header, and forwarded calls keep the IDs they arrived with: a call that
 * comes back to the proxy that already sent it has gone round a loop.
 */
export const VIA_HEADER = 'x-etcd-cache-proxy-via';
export const LOOP_DETAILS = 'etcd-cache-proxy: request loop: this proxy is its own upstream';
/**
 * Trailer of the loop refusal: how many proxies the call went through before
 * it came back (1: the proxy reached itself; 2: two proxies, each the
 * other's upstream), so the proxy that sent it can say which it was.
 */
export const LOOP_LENGTH_HEADER = 'x-etcd-cache-proxy-loop';

export function createInstanceId(): string {
  return randomBytes(8).toString('hex');
}

/** Marks every upstream call with the proxy's instance ID. */
export function viaInterceptor(instanceId: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.add(VIA_HEADER, instanceId);
        next(metadata, listener);
      },
    });
}

export function isLoopError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as Partial<ServiceError>).details === LOOP_DETAILS;
}

/**
 * The proxies a call went through before it came back to `instanceId`
 * (its via markers from this proxy's own on), or 0 when it did not: the
 * call has gone round a loop of that many proxies.
 */
export function loopLength(viaValues: readonly unknown[], instanceId: string): number {
  if (viaValues.length === 0) return 0;
  // Several hops' markers may arrive as one comma-joined value.
  const ids = viaValues.flatMap((value) => String(value).split(',').map((id) => id.trim()));
  const at = ids.indexOf(instanceId);
  return at < 0 ? 0 : ids.length - at;
}

/** How many proxies a loop refusal says the loop held (1 when it does not say: the proxy itself). */
export function loopLengthOf(error: ServiceError): number {
  const told = Number(error.metadata?.get(LOOP_LENGTH_HEADER)[0]);
  return Number.isSafeInteger(told) && told >= 1 ? told : 1;
}

/** Where this proxy can be reached: what it listens on and what it advertises. */
export interface SelfAddresses {
  readonly listen: HostPort;
  readonly advertiseClientUrl: string;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

function localAddresses(): Set<string> {
  const addresses = new Set(['127.0.0.1', '::1']);
  for (const entries of Object.values(networkInterfaces())) for (const entry of entries ?? []) addresses.add(entry.address);
  return addresses;
}

async function addressesOf(host: string): Promise<Set<string>> {
  try {
    return new Set((await lookup(host, { all: true })).map((a) => a.address));
  } catch {
    return new Set(); // a name that does not resolve cannot be this proxy
  }
}

/**
 * True when an endpoint is this proxy by address: the listen port on an
 * address the listener accepts, or the advertised URL. Names are resolved, so
 * "localhost:23790" is caught as well as "127.0.0.1:23790". What this cannot
 * see (NAT, a port forward, another proxy pointing back) the via header
 * catches on the first call.
 */
export async function pointsAtSelf(endpoint: UpstreamEndpoint, self: SelfAddresses): Promise<boolean> {
  const targets = await addressesOf(endpoint.host);
  if (endpoint.port === self.listen.port) {
    const listening = WILDCARDS.has(self.listen.host) ? localAddresses() : await addressesOf(self.listen.host);
    if ([...targets].some((address) => listening.has(address))) return true;
  }
  let advertised: URL;
  try {
    advertised = new URL(self.advertiseClientUrl);
  } catch {
    return false;
  }
  const advertisedPort = advertised.port === '' ? (advertised.protocol === 'https:' ? 443 : 80) : Number(advertised.port);
  if (endpoint.port !== advertisedPort) return false;
  const advertisedAddresses = await addressesOf(advertised.hostname.replace(/^\[|\]$/g, ''));
  return [...targets].some((address) => advertisedAddresses.has(address));
}
