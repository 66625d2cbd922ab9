import { etcdMethod } from '../etcd/proto';
import type { WireEvent, WireWatchResponse } from '../etcd/wire';
import { fragmentGroups } from './fragment';

const watchMethod = etcdMethod('etcdserverpb.Watch', 'Watch');

export function modRevision(event: WireEvent): number {
  return Number(event.kv?.mod_revision ?? '0');
}

/**
 * What one member of a shared upstream watch is owed of one upstream
 * response (all its fragments, `parts`, in order): the events from its
 * `start` revision on. When it is owed every event, etcd's messages go out as
 * they came, fragments intact. Only a catch-up batch (several revisions in
 * one response) can straddle a start; the member then gets the subset, split
 * as etcd would split that subset for a watch that asked for fragments.
 */
export function memberResponses(parts: readonly WireWatchResponse[], start: number, fragment: boolean): WireWatchResponse[] {
  const events = parts.flatMap((part) => part.events ?? []);
  const owed = events.filter((event) => modRevision(event) >= start);
  if (owed.length === events.length) return [...parts];
  if (owed.length === 0) return [];
  const last = parts[parts.length - 1];
  const base: WireWatchResponse = { ...last, events: [], fragment: false };
  const groups = fragment
    ? fragmentGroups(owed, (event) => watchMethod.responseSerialize({ events: [event] }).length, watchMethod.responseSerialize(base).length)
    : [owed];
  return groups.map((group, index) => ({ ...base, events: group, ...(index < groups.length - 1 ? { fragment: true } : {}) }));
}
