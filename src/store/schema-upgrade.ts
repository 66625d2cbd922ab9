import type { Database, RootDatabase } from 'lmdb';
import { encodeEvent, type EncodedEvent } from '../etcd/event-bytes';
import { encodeKeyValue, type EncodedKeyValue } from '../etcd/kv-bytes';
import type { EventType } from '../etcd/records';
import { encodeLogEntry } from './log-entry';

/** A key as schema 1 kept it: a msgpack'd object with mvccpb's field names. */
interface Schema1KeyValue {
  readonly key: Uint8Array;
  readonly create_revision: number;
  readonly mod_revision: number;
  readonly version: number;
  readonly value: Uint8Array;
  readonly lease: string;
}

interface Schema1Event {
  readonly type: EventType;
  readonly kv: Schema1KeyValue;
  readonly prev_kv?: Schema1KeyValue;
}

export interface SchemaUpgrade {
  readonly keys: number;
  readonly logRevisions: number;
}

/** msgpack hands back Buffers in Node; a plain Uint8Array is wrapped, not copied. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toEncoded(kv: Schema1KeyValue): EncodedKeyValue {
  return encodeKeyValue({ ...kv, key: asBuffer(kv.key), value: asBuffer(kv.value) });
}

/**
 * Rewrites a schema-1 store in place: every key of the active table and
 * every log entry re-encoded once as etcd's encodings, under the same LMDB
 * keys, so the mirror survives an upgrade (a proxy upgraded during an
 * outage keeps serving what it had). The inactive table holds nothing
 * anyone reads and is emptied. Must run inside the caller's write
 * transaction, with the meta update, so a crash leaves schema 1 intact.
 */
export function upgradeFromSchema1(
  root: RootDatabase,
  target: { readonly activeKv: Database<Buffer, Buffer>; readonly inactiveKv: Database<Buffer, Buffer>; readonly log: Database<Buffer, number> },
  activeName: string,
): SchemaUpgrade {
  // The same LMDB tables, read through schema 1's encoding.
  const oldKv = root.openDB<Schema1KeyValue, Buffer>({ name: activeName, keyEncoding: 'binary', encoding: 'msgpack' });
  const oldLog = root.openDB<Schema1Event[], number>({ name: 'log', keyEncoding: 'ordered-binary', encoding: 'msgpack' });
  // Keys first, values after: a table is not rewritten under a cursor still reading it.
  const storeKeys = [...oldKv.getKeys()];
  for (const storeKey of storeKeys) {
    const record = oldKv.get(storeKey);
    if (record !== undefined) target.activeKv.putSync(storeKey, toEncoded(record).bytes);
  }
  const revisions = [...oldLog.getKeys()];
  for (const revision of revisions) {
    const events = oldLog.get(revision) ?? [];
    const encoded: EncodedEvent[] = events.map((event) => encodeEvent(event.type, toEncoded(event.kv), event.prev_kv === undefined ? undefined : toEncoded(event.prev_kv)));
    target.log.putSync(revision, encodeLogEntry(encoded));
  }
  target.inactiveKv.clearSync();
  return { keys: storeKeys.length, logRevisions: revisions.length };
}
