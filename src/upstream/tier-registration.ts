import { Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { etcdMethod } from '../etcd/proto';
import type { Logger } from '../log';
import type { ResolverSettings } from '../settings/types';
import { reasonedCall } from './call-reason';
import type { UpstreamMember, UpstreamPool } from './pool';
import { registrationKey, registrationValue } from './tier-entry';
import { callUpstream } from './unary';

const CALL_TIMEOUT_MS = 5_000;
/** A lost registration is tried again after 1 s (grpc-proxy's rate), growing to this while etcd does not answer. */
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 10_000;
/** A graceful stop revokes the lease, so the entry goes at once; it waits no longer than this for etcd. */
const REVOKE_TIMEOUT_MS = 1_000;

const keepAliveMethod = etcdMethod('etcdserverpb.Lease', 'LeaseKeepAlive');

/** Who the registration's calls are made as (--user when etcd has auth on): UpstreamLogin, seen from here. */
export interface RegistrationIdentity {
  readyAt(member: UpstreamMember): Promise<void>;
  metadataFor(member: UpstreamMember): Metadata;
  observe(member: UpstreamMember, error: unknown): boolean;
}

export interface TierRegistrationDeps {
  readonly resolver: ResolverSettings;
  readonly pool: UpstreamPool;
  readonly identity: RegistrationIdentity;
  /** This machine's name, in the registration's metadata (grpc-proxy's: the hostname). */
  readonly name: string;
  readonly log: Logger;
}

interface Grant {
  readonly ID?: string;
  readonly TTL?: string;
  readonly error?: string;
}

interface KeepAliveAnswer {
  readonly ID?: string;
  readonly TTL?: string;
}

/**
 * This proxy's registration under --resolver-prefix, as etcd grpc-proxy
 * keeps its own: a lease of --resolver-ttl seconds, the key
 * `<prefix>/<advertised URL>` put with it, and the lease renewed every third
 * of its TTL on one keep-alive stream. When the lease is lost (etcd said it
 * expired, or no renewal was answered before it would have), the proxy
 * registers again with a new lease as soon as etcd answers. close() revokes
 * the lease, so a stopped proxy leaves the list at once; a killed one leaves
 * it when its lease expires.
 */
export class TierRegistration {
  private closed = false;
  /** The running register-and-keep loop, once start() was called. */
  private loop: Promise<void> | null = null;
  /** Ends the current wait: the keep-alive of a lease, or the pause before trying again (close()). */
  private wake: (() => void) | null = null;
  /** The lease held now, with the member that granted it; null between registrations. */
  private held: { readonly id: string; readonly member: UpstreamMember } | null = null;

  constructor(private readonly deps: TierRegistrationDeps) {}

  /** Registers `addr` (the advertised client URL, known once the port is bound) and keeps it registered until close(). */
  start(addr: string): void {
    if (this.loop !== null || this.closed) return;
    this.loop = this.run(addr);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    // A registration under way when etcd does not answer would hold the stop for its calls' deadlines: it is left to end on its own.
    await Promise.race([this.loop, new Promise((resolve) => setTimeout(resolve, REVOKE_TIMEOUT_MS).unref())]);
    const held = this.held;
    this.held = null;
    if (held === null) return;
    try {
      const metadata = this.deps.identity.metadataFor(held.member);
      await callUpstream(held.member.client, 'etcdserverpb.Lease', 'LeaseRevoke', { ID: held.id }, { deadlineMs: REVOKE_TIMEOUT_MS, reason: 'tier-registration', metadata });
    } catch (error) {
      this.deps.log.debug({ err: error }, 'tier registration: lease not revoked; it expires on its own');
    }
  }

  private async run(addr: string): Promise<void> {
    const { log, resolver } = this.deps;
    const key = registrationKey(resolver.prefix, addr);
    const value = registrationValue(addr, this.deps.name);
    let registeredBefore = false;
    let failures = 0;
    while (!this.closed) {
      try {
        const lease = await this.register(key, value);
        log.info({ key, ttlSeconds: lease.ttlMs / 1000, lease: lease.id }, registeredBefore ? 'tier registration: registered again' : 'tier registration: registered');
        registeredBefore = true;
        failures = 0;
        if (!(await this.keep(lease.id, lease.member, lease.ttlMs))) return;
        this.held = null;
        log.warn({ key, lease: lease.id }, 'tier registration: lease lost (etcd unreachable, or the lease expired); registering again once etcd answers');
        continue;
      } catch (error) {
        if (this.closed) return;
        // Said once per outage: a fleet's logs need no line per retry.
        if (failures === 0) log.warn({ key, err: error instanceof Error ? error.message : String(error) }, 'tier registration failed; trying again until etcd takes it');
        failures++;
      }
      await this.pause(Math.min(FIRST_RETRY_MS * 2 ** (failures - 1), MAX_RETRY_MS) * (0.5 + Math.random() / 2));
    }
  }

  /** A lease, and the key put with it, from the first member that takes both. */
  private async register(key: string, value: string): Promise<{ id: string; member: UpstreamMember; ttlMs: number }> {
    const { pool, identity, resolver } = this.deps;
    const failures: string[] = [];
    for (const member of pool.candidates()) {
      if (this.closed) break;
      try {
        await identity.readyAt(member);
        const options = { deadlineMs: CALL_TIMEOUT_MS, reason: 'tier-registration' as const, metadata: identity.metadataFor(member) };
        const grant = await callUpstream<Grant>(member.client, 'etcdserverpb.Lease', 'LeaseGrant', { TTL: resolver.ttlSeconds }, options);
        if (grant.ID === undefined || (grant.error ?? '') !== '') throw new Error(`lease not granted: ${grant.error ?? 'no ID'}`);
        this.held = { id: grant.ID, member };
        // Stopped meanwhile: no key is put, and the lease expires on its own (or close() revokes it).
        if (this.closed) throw new Error('stopping');
        await callUpstream(member.client, 'etcdserverpb.KV', 'Put', { key: Buffer.from(key), value: Buffer.from(value), lease: grant.ID }, options);
        // etcd may grant more than was asked (its least TTL is about 1.5 election timeouts): renew by what it granted.
        return { id: grant.ID, member, ttlMs: Math.max(Number(grant.TTL ?? resolver.ttlSeconds), 1) * 1000 };
      } catch (error) {
        // A lease granted without its key expires on its own.
        this.held = null;
        identity.observe(member, error);
        failures.push(`${member.endpoint.url}: ${(error as { details?: string }).details ?? String(error)}`);
      }
    }
    throw new Error(failures.length === 0 ? 'no member known' : failures.join('; '));
  }

  /**
   * Renews the lease every third of its TTL until close() (false) or until
   * it is lost (true): etcd answered a renewal with TTL 0 (expired, revoked),
   * or no renewal was answered before the lease would have expired. A
   * stream that ends is opened again on the best member at the next renewal.
   */
  private keep(id: string, grantedBy: UpstreamMember, ttlMs: number): Promise<boolean> {
    const { pool, identity } = this.deps;
    return new Promise((resolve) => {
      let expiresAt = Date.now() + ttlMs;
      let stream: ClientDuplexStream<object, KeepAliveAnswer> | null = null;
      /** When each renewal on the open stream was sent, oldest first: etcd answers them in order, and a lease renewed at T lives until T + TTL. */
      let sentTimes: number[] = [];
      const finish = (lost: boolean): void => {
        clearInterval(timer);
        this.wake = null;
        const open = stream;
        stream = null;
        open?.cancel();
        resolve(lost);
      };
      const openStream = (): ClientDuplexStream<object, KeepAliveAnswer> | null => {
        const member = pool.candidates()[0] ?? grantedBy;
        const metadata = identity.metadataFor(member);
        // A member without a leader would leave the renewal unanswered: etcd refuses the stream at once instead, and the next renewal goes elsewhere.
        metadata.set('hasleader', 'true');
        let call: ClientDuplexStream<object, KeepAliveAnswer>;
        try {
          const deserialize = keepAliveMethod.responseDeserialize as (bytes: Buffer) => KeepAliveAnswer;
          call = member.client.makeBidiStreamRequest(keepAliveMethod.path, keepAliveMethod.requestSerialize, deserialize, metadata, reasonedCall('tier-registration'));
        } catch {
          return null; // the channel closed: only while the proxy stops
        }
        call.on('data', (answer: KeepAliveAnswer) => {
          if (stream !== call) return;
          const sentAt = sentTimes.shift();
          if (answer.ID !== id) return;
          if (Number(answer.TTL ?? 0) <= 0) return finish(true);
          if (sentAt !== undefined) expiresAt = Math.max(expiresAt, sentAt + Number(answer.TTL) * 1000);
        });
        // Every end also arrives as 'status'.
        call.on('error', () => undefined);
        call.on('status', () => {
          if (stream === call) stream = null;
        });
        return call;
      };
      const renew = (): void => {
        if (Date.now() >= expiresAt) return finish(true);
        if (stream === null) {
          stream = openStream();
          sentTimes = [];
        }
        if (stream === null) return;
        // More than a TTL's worth unanswered: the stream is stuck (a member that lost its peers); the next renewal opens another.
        if (sentTimes.length > 3) {
          const stuck = stream;
          stream = null;
          stuck.cancel();
          return;
        }
        sentTimes.push(Date.now());
        stream.write({ ID: id });
      };
      const timer = setInterval(renew, Math.max(ttlMs / 3, 100));
      timer.unref();
      this.wake = () => finish(false);
    });
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wake = done;
    });
  }
}
