import type { EtcdRevision, FaultRecord, History, KeepAliveRecord, LeaseRecord } from '../history';
import type { Violation } from './violation';

/** How much earlier than its TTL promised a lease may seem to end: the history watch's own delay. */
const EARLY_SLACK_MS = 300;
/** How much later than its TTL a lease may end once nothing keeps it alive: etcd checks leases every 500 ms, plus the watch's delay. */
const LATE_SLACK_MS = 2_500;

interface Expiry {
  readonly revision: number;
  readonly at: number;
}

/** The delete of the lease's key after its put under that lease: when the lease ended, as the history watch saw it. */
function expiryOf(lease: LeaseRecord, etcd: readonly EtcdRevision[]): Expiry | null | undefined {
  let put = false;
  for (const entry of etcd) {
    for (const event of entry.events) {
      if (event.kv.key !== lease.key) continue;
      if (event.type === 'put' && event.kv.lease === lease.leaseId) put = true;
      else if (event.type === 'delete' && put) return entry.at === undefined ? undefined : { revision: entry.revision, at: entry.at };
    }
  }
  return put ? null : undefined;
}

/** The renewal the lease holder could count on last before `time`: the grant, or a keep-alive answered with a TTL. */
function lastRenewalBefore(lease: LeaseRecord, time: number): { sent: number; ttl: number; answered: number } {
  let best = { sent: lease.granted, ttl: lease.ttl, answered: lease.granted };
  for (const keepAlive of lease.keepAlives) if (keepAlive.ttl > 0 && keepAlive.answered < time && keepAlive.sent > best.sent) best = keepAlive;
  return best;
}

/** The faults that leave etcd's members alone (every other one may bring an election, which renews every lease). */
const LEAVE_ETCD_ALONE = new Set(['kill-proxy', 'pause-proxy', 'disk-full', 'compact-via-proxy', 'compact-etcd']);

/** A fault that touched etcd's members between the two times. */
function memberFaultBetween(faults: readonly FaultRecord[], from: number, to: number): boolean {
  return faults.some((fault) => !LEAVE_ETCD_ALONE.has(fault.name) && fault.at <= to && (fault.until ?? fault.at) >= from);
}

/**
 * Leases kept alive through a proxy: none ended while its keep-alives were
 * answered (before the last answered renewal's TTL ran out), no keep-alive
 * was answered with a TTL after the lease had ended, and none outlived its
 * TTL once the keep-alives stopped, counted from the last one sent, answered
 * or not (unless a member fault, whose election renews every lease, came
 * between).
 */
export function checkLeases(history: History): Violation[] {
  const violations: Violation[] = [];
  const lastSeen = history.etcd.at(-1)?.at ?? 0;
  for (const lease of history.leases ?? []) {
    const expiry = expiryOf(lease, history.etcd);
    if (expiry === undefined) continue; // its key was never put under it, or times were not recorded
    if (expiry !== null) {
      const renewal = lastRenewalBefore(lease, expiry.at);
      if (expiry.at < renewal.sent + renewal.ttl * 1000 - EARLY_SLACK_MS) {
        violations.push({ check: 'lease', message: `${lease.via}: lease ${lease.leaseId} (${lease.key}) ended at ${Math.round(expiry.at)} ms, before the ${renewal.ttl} s its renewal sent at ${Math.round(renewal.sent)} ms promised`, evidence: [lease] });
      }
      const afterEnd = lease.keepAlives.find((keepAlive: KeepAliveRecord) => keepAlive.ttl > 0 && keepAlive.sent > expiry.at);
      if (afterEnd !== undefined) violations.push({ check: 'lease', message: `${lease.via}: lease ${lease.leaseId} kept alive with TTL ${afterEnd.ttl} at ${Math.round(afterEnd.sent)} ms, after it ended at ${Math.round(expiry.at)} ms`, evidence: [lease] });
    }
    if (lease.stopped === null) continue;
    const last = lastRenewalBefore(lease, lease.stopped + 1);
    // A keep-alive sent after the last answered one may have renewed the lease at etcd all the same (for the TTL granted).
    const unanswered = lease.lastSent !== undefined && lease.lastSent !== null && lease.lastSent > last.sent ? lease.lastSent + lease.ttl * 1000 : 0;
    const deadline = Math.max(last.answered + last.ttl * 1000, unanswered) + LATE_SLACK_MS;
    const ended = expiry?.at ?? Infinity;
    if (ended > deadline && lastSeen > deadline && !memberFaultBetween(history.faults, last.sent, deadline)) {
      violations.push({ check: 'lease', message: `${lease.via}: lease ${lease.leaseId} (${lease.key}) outlived its ${last.ttl} s TTL: keep-alives stopped at ${Math.round(lease.stopped)} ms, ${expiry === null ? 'still there at the end' : `ended at ${Math.round(ended)} ms`}`, evidence: [lease] });
    }
  }
  return violations;
}
