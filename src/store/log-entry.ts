import { EncodedEvent } from '../etcd/event-bytes';
import { MalformedMessage, WireReader, varintSize, writeVarint } from '../etcd/protowire';

/**
 * One event-log entry: the events of one revision, each as etcd's Event
 * encoding. Framing, per event: varint length of the event, varint length of
 * the event without its prev_kv, then the event's bytes. Reading it back
 * makes views into the entry, no copies.
 */
export function encodeLogEntry(events: readonly EncodedEvent[]): Buffer {
  let size = 0;
  for (const event of events) size += varintSize(event.bytes.length) + varintSize(event.withoutPrevKvLength) + event.bytes.length;
  const entry = Buffer.allocUnsafe(size);
  let at = 0;
  for (const event of events) {
    at = writeVarint(entry, at, event.bytes.length);
    at = writeVarint(entry, at, event.withoutPrevKvLength);
    at += event.bytes.copy(entry, at);
  }
  return entry;
}

export function decodeLogEntry(entry: Buffer): EncodedEvent[] {
  const reader = new WireReader(entry);
  const events: EncodedEvent[] = [];
  while (!reader.done()) {
    const length = reader.varint();
    const withoutPrevKv = reader.varint();
    const start = reader.position;
    if (start + length > entry.length || withoutPrevKv > length) throw new MalformedMessage('log entry cut short');
    events.push(new EncodedEvent(entry.subarray(start, start + length), withoutPrevKv));
    reader.position = start + length;
  }
  return events;
}
