/**
 * What a user may read, decided as etcd 3.4's auth store decides it, so that
 * the mirror never serves a read etcd would refuse, nor refuses one etcd
 * would serve.
 *
 * etcd merges the key permissions of all the user's roles into intervals of
 * "affine" byte strings, where the empty string stands for +infinity: a
 * permission on one key is [key, key+"\0"); one with a range end is
 * [key, end), and an end of "\0" is read as no end at all. A single key is
 * readable when some read interval overlaps it; a range only when the read
 * intervals overlapping it are contiguous and together reach from its start
 * to its end. The root role reads everything.
 */

export type PermissionType = 'READ' | 'WRITE' | 'READWRITE';

export interface KeyPermission {
  readonly key: Buffer;
  /** Empty: the key alone; "\0": every key from `key` on. */
  readonly rangeEnd: Buffer;
  readonly type: PermissionType;
}

/** The role etcd lets do anything. */
export const ROOT_ROLE = 'root';

/** A half-open interval of affine byte strings; an empty bound is +infinity. */
interface Interval {
  readonly begin: Buffer;
  readonly end: Buffer;
}

/** etcd's BytesAffineComparable: the empty string is greater than everything else. */
function compareAffine(a: Buffer, b: Buffer): number {
  if (a.length === 0) return b.length === 0 ? 0 : 1;
  if (b.length === 0) return -1;
  return Buffer.compare(a, b);
}

const NUL = Buffer.from([0]);

function isNul(bytes: Buffer): boolean {
  return bytes.length === 1 && bytes[0] === 0;
}

/** [key, key+"\0"): the interval of exactly one key. */
function pointInterval(key: Buffer): Interval {
  return { begin: key, end: Buffer.concat([key, NUL]) };
}

/** How etcd turns one key permission into an interval. */
function permissionInterval(permission: KeyPermission): Interval {
  if (permission.rangeEnd.length === 0) return pointInterval(permission.key);
  return { begin: permission.key, end: isNul(permission.rangeEnd) ? Buffer.alloc(0) : permission.rangeEnd };
}

function overlaps(a: Interval, b: Interval): boolean {
  return compareAffine(a.begin, b.end) < 0 && compareAffine(b.begin, a.end) < 0;
}

export class ReadPermissions {
  /** The read intervals, ordered by start (then end), as etcd's interval tree visits them. */
  private readonly intervals: readonly Interval[];

  constructor(
    permissions: readonly KeyPermission[],
    /** The user has the root role. */
    readonly root: boolean,
  ) {
    this.intervals = permissions
      .filter((permission) => permission.type !== 'WRITE')
      .map(permissionInterval)
      .sort((a, b) => compareAffine(a.begin, b.begin) || compareAffine(a.end, b.end));
  }

  /** May the user read `key` (empty `rangeEnd`) or the range [key, rangeEnd) (rangeEnd "\0": from key on)? */
  permits(key: Buffer, rangeEnd: Buffer): boolean {
    if (this.root) return true;
    if (rangeEnd.length === 0) {
      const point = pointInterval(key);
      return this.intervals.some((interval) => overlaps(interval, point));
    }
    return this.covers({ begin: key, end: isNul(rangeEnd) ? Buffer.alloc(0) : rangeEnd });
  }

  /**
   * What the user may read, as the fewest contiguous key ranges (end null:
   * no end): each one etcd lets the user list and watch whole. Null for
   * root, which reads everything.
   */
  readableRuns(): { start: Buffer; end: Buffer | null }[] | null {
    if (this.root) return null;
    const runs: { start: Buffer; end: Buffer }[] = [];
    for (const interval of this.intervals) {
      const last = runs[runs.length - 1];
      if (last !== undefined && compareAffine(interval.begin, last.end) <= 0) {
        if (compareAffine(interval.end, last.end) > 0) last.end = interval.end;
      } else {
        runs.push({ start: interval.begin, end: interval.end });
      }
    }
    return runs.map((run) => ({ start: run.start, end: run.end.length === 0 ? null : run.end }));
  }

  /** etcd's IntervalTree.Contains: the overlapping intervals leave no gap and span all of `wanted`. */
  private covers(wanted: Interval): boolean {
    let first: Interval | null = null;
    let reach: Buffer = Buffer.alloc(0);
    for (const interval of this.intervals) {
      if (!overlaps(interval, wanted)) continue;
      if (first === null) {
        first = interval;
        reach = interval.end;
        continue;
      }
      if (compareAffine(reach, interval.begin) < 0) return false;
      if (compareAffine(interval.end, reach) > 0) reach = interval.end;
    }
    return first !== null && compareAffine(reach, wanted.end) >= 0 && compareAffine(first.begin, wanted.begin) <= 0;
  }
}
