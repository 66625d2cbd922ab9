// Users and roles covering etcd's read-permission cases (one key, one range,
// a prefix, an open "\0" range, two roles that only together cover a range,
// a gap, write-only, read-write, none), and a table of reads across them:
// shared by the tests of the permission model and of the proxy under auth.
import type { RolePlan, UserPlan } from './etcd-auth';

export const ROLES: RolePlan[] = [
  { name: 'one-key', permissions: [{ key: 'a/1', type: 'READ' }] },
  { name: 'one-range', permissions: [{ key: 'b/1', rangeEnd: 'b/5', type: 'READ' }] },
  { name: 'prefix', permissions: [{ key: 'c/', rangeEnd: 'c0', type: 'READ' }] },
  { name: 'open', permissions: [{ key: 'd/', rangeEnd: '\0', type: 'READ' }] },
  { name: 'lower', permissions: [{ key: 'e/1', rangeEnd: 'e/3', type: 'READ' }] },
  { name: 'upper', permissions: [{ key: 'e/3', rangeEnd: 'e/6', type: 'READ' }] },
  { name: 'gap', permissions: [{ key: 'g/1', rangeEnd: 'g/3', type: 'READ' }, { key: 'g/4', rangeEnd: 'g/6', type: 'READ' }] },
  { name: 'write-only', permissions: [{ key: 'a/', rangeEnd: 'a0', type: 'WRITE' }] },
  { name: 'read-write', permissions: [{ key: 'f/', rangeEnd: 'f0', type: 'READWRITE' }, { key: 'h/x', type: 'READWRITE' }] },
];

export const USERS: UserPlan[] = [
  { name: 'u-key', password: 'p1', roles: ['one-key'] },
  { name: 'u-range', password: 'p2', roles: ['one-range'] },
  { name: 'u-prefix', password: 'p3', roles: ['prefix'] },
  { name: 'u-open', password: 'p4', roles: ['open'] },
  { name: 'u-two', password: 'p5', roles: ['lower', 'upper'] },
  { name: 'u-lower', password: 'p6', roles: ['lower'] },
  { name: 'u-gap', password: 'p7', roles: ['gap'] },
  { name: 'u-write', password: 'p8', roles: ['write-only'] },
  { name: 'u-rw', password: 'p9', roles: ['read-write'] },
  { name: 'u-none', password: 'p10', roles: [] },
];

/** [key, rangeEnd]: rangeEnd '' reads one key, '\0' every key from `key` on. */
export const READS: readonly (readonly [string, string])[] = [
  ['a/1', ''], ['a/2', ''], ['a/1', 'a/1\0'], ['a/', 'a0'],
  ['b/1', ''], ['b/4', ''], ['b/5', ''], ['b/1', 'b/5'], ['b/2', 'b/4'], ['b/1', 'b/6'], ['b/0', 'b/3'], ['b/4', 'b/5\0'],
  ['c/x', ''], ['c/', 'c0'], ['c/a', 'c/b'], ['c/', 'c1'], ['c', 'c0'],
  ['d/', ''], ['d/zzz', ''], ['d/', '\0'], ['d/a', '\0'], ['d/', 'e'], ['d', '\0'], ['\0', '\0'],
  ['e/1', 'e/6'], ['e/2', 'e/4'], ['e/1', 'e/7'], ['e/0', 'e/3'], ['e/3', ''], ['e/1', 'e/3'],
  ['g/1', 'g/6'], ['g/1', 'g/3'], ['g/2', 'g/5'], ['g/4', 'g/5'], ['g/3', ''],
  ['f/1', ''], ['f/', 'f0'], ['h/x', ''], ['h/x', 'h/x\0'], ['h/', 'h0'],
  ['z', ''], ['z', '\0'],
];

