/**
 * etcd splits a watch response whose encoded size reaches its limit into
 * several, when the watcher asked for fragments: each holds as many events as
 * fit (at least one), all but the last are marked `fragment`. The limit is the
 * server's request limit plus gRPC overhead: 1.5 MiB + 512 KiB by default.
 */
export const FRAGMENT_LIMIT_BYTES = 1.5 * 1024 * 1024 + 512 * 1024;

/**
 * Splits `events` into groups the way etcd fragments them, given each event's
 * encoded size and the size of the response without events.
 */
export function fragmentGroups<E>(events: readonly E[], sizeOf: (event: E) => number, baseSize: number, limit = FRAGMENT_LIMIT_BYTES): E[][] {
  const total = events.reduce((sum, event) => sum + sizeOf(event), baseSize);
  if (total < limit || events.length < 2) return [[...events]];
  const groups: E[][] = [];
  let current: E[] = [];
  let size = baseSize;
  for (const event of events) {
    const eventSize = sizeOf(event);
    if (current.length > 0 && size + eventSize >= limit) {
      groups.push(current);
      current = [];
      size = baseSize;
    }
    current.push(event);
    size += eventSize;
  }
  groups.push(current);
  return groups;
}
