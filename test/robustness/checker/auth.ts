import type { History } from '../history';
import { inRange } from './keyspace';
import type { Violation } from './violation';

/** With auth on, no answer (nor watch event) ever carried a key its client's user may not read. */
export function checkReadable(history: History): Violation[] {
  const readable = history.readable ?? {};
  const mayRead = (client: string, key: string): boolean => {
    const ranges = readable[client];
    return ranges === undefined || ranges.some((range) => inRange(key, range.key, range.rangeEnd));
  };
  const violations: Violation[] = [];
  for (const op of history.operations) {
    if (!op.result.ok) continue;
    const leaked = (op.result.kvs ?? []).find((kv) => !mayRead(op.client, kv.key));
    if (leaked !== undefined) violations.push({ check: 'auth', message: `${op.via}: client ${op.client} was answered ${leaked.key}, which its user may not read`, evidence: [op] });
  }
  for (const watch of history.watches) {
    const leaked = watch.deliveries.flatMap((d) => d.events).find((event) => !mayRead(watch.client, event.kv.key));
    if (leaked !== undefined) violations.push({ check: 'auth', message: `${watch.via}: client ${watch.client} was sent an event of ${leaked.kv.key}, which its user may not read`, evidence: [watch] });
  }
  return violations;
}
