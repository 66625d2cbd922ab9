/**
 * How long the mirror waits before its next attempt to reach etcd: "full
 * jitter", a random delay between zero and an exponentially growing bound,
 * capped. Every proxy of a fleet loses etcd at the same moment in an outage;
 * without the randomness they would all come back at the same moment too,
 * and knock etcd down again.
 */
export function fullJitterDelayMs(failures: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const bound = Math.min(capMs, baseMs * 2 ** Math.min(failures, 30));
  return Math.floor(random() * bound);
}
