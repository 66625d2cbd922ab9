import { EncodedEvent } from './event-bytes';
import { etcdMethod } from './proto';
import { WIRE_VARINT, bytesFieldSize, encodeBigVarint, splitRepeatedField, tag, varintSize, writeBytesField, writeVarint } from './protowire';
import type { WireWatchResponse } from './wire';

/** WatchResponse's field numbers. */
const HEADER = 1;
const WATCH_ID = 2;
const FRAGMENT = 7;
const EVENTS = 11;

/**
 * The start of a WatchResponse carrying events: header, watch_id (left out
 * when 0, as etcd does) and the fragment flag, in field order. The events
 * field comes last, so the message is this followed by encodeWatchEvents.
 */
export function encodeWatchResponseHead(header: Buffer, watchId: number, fragment: boolean): Buffer {
  // A client may choose a negative ID: int64's ten-byte two's complement.
  const negativeId = watchId < 0 ? encodeBigVarint(BigInt(watchId)) : null;
  const idSize = watchId === 0 ? 0 : 1 + (negativeId === null ? varintSize(watchId) : negativeId.length);
  const bytes = Buffer.allocUnsafe(bytesFieldSize(header.length) + idSize + (fragment ? 2 : 0));
  let at = writeBytesField(bytes, 0, HEADER, header);
  if (watchId !== 0) {
    bytes[at] = tag(WATCH_ID, WIRE_VARINT);
    if (negativeId === null) at = writeVarint(bytes, at + 1, watchId);
    else at += 1 + negativeId.copy(bytes, at + 1);
  }
  if (fragment) {
    bytes[at] = tag(FRAGMENT, WIRE_VARINT);
    bytes[at + 1] = 1;
  }
  return bytes;
}

/** The event as a watcher gets it: with prev_kv if it asked for it. */
function eventBytes(event: EncodedEvent, prevKv: boolean): Buffer {
  return prevKv ? event.bytes : event.withoutPrevKv();
}

/** Bytes one event adds to a WatchResponse (tag, length, event): what etcd's fragmenting counts. */
export function watchEventSize(event: EncodedEvent, prevKv: boolean): number {
  return bytesFieldSize(prevKv ? event.bytes.length : event.withoutPrevKvLength);
}

/** The repeated `events` field of a WatchResponse: each stored event's bytes behind its tag and length. */
export function encodeWatchEvents(events: readonly EncodedEvent[], prevKv: boolean): Buffer {
  let size = 0;
  for (const event of events) size += watchEventSize(event, prevKv);
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  for (const event of events) at = writeBytesField(bytes, at, EVENTS, eventBytes(event, prevKv));
  return bytes;
}

const watchMethod = etcdMethod('etcdserverpb.Watch', 'Watch');

/**
 * An upstream WatchResponse read without re-encoding its events: each event
 * is kept as the bytes etcd sent (checked), the other fields are decoded
 * from what is left. Throws MalformedMessage on bytes that do not parse.
 */
export function readWatchResponse(bytes: Buffer): { response: WireWatchResponse; events: EncodedEvent[] } {
  const { items, rest } = splitRepeatedField(bytes, EVENTS);
  return { response: watchMethod.responseDeserialize(rest) as WireWatchResponse, events: items.map((item) => EncodedEvent.fromWire(item)) };
}
