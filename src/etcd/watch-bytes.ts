import { EncodedEvent } from './event-bytes';
import { MalformedMessage, WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireReader, bytesFieldSize, encodeBigVarint, splitRepeatedField, tag, varintSize, writeBytesField, writeVarint } from './protowire';
import type { WireHeader, WireWatchResponse } from './wire';

/** WatchResponse's field numbers. */
const HEADER = 1;
const WATCH_ID = 2;
const CREATED = 3;
const CANCELED = 4;
const COMPACT_REVISION = 5;
const CANCEL_REASON = 6;
const FRAGMENT = 7;
const EVENTS = 11;

/** ResponseHeader's fields, by number: uint64 but for the revision, an int64. */
const HEADER_FIELDS: Readonly<Record<number, { name: keyof WireHeader; signed: boolean }>> = {
  1: { name: 'cluster_id', signed: false },
  2: { name: 'member_id', signed: false },
  3: { name: 'revision', signed: true },
  4: { name: 'raft_term', signed: false },
};

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

/**
 * An upstream WatchResponse read without re-encoding its events: each event
 * is kept as the bytes etcd sent (checked), the other fields are decoded
 * from what is left. Throws MalformedMessage on bytes that do not parse.
 */
export function readWatchResponse(bytes: Buffer): { response: WireWatchResponse; events: EncodedEvent[] } {
  const { items, rest } = splitRepeatedField(bytes, EVENTS);
  return { response: readWatchResponseFields(rest), events: items.map((item) => EncodedEvent.fromWire(item)) };
}

/** An integer field as proto-loader gives it here (longs as decimal strings): int64 signed, uint64 not. */
function integerText(reader: WireReader, signed: boolean): string {
  const value = reader.bigVarint();
  return (signed ? BigInt.asIntN(64, value) : value).toString();
}

function expectWireType(field: number, wireType: number, expected: number): void {
  if (wireType !== expected) throw new MalformedMessage(`WatchResponse field ${field} has wire type ${wireType}`);
}

/**
 * WatchResponse's fields other than its events, as proto-loader would give
 * them (the same object: absent fields absent, a field given twice keeps
 * the last), read straight from the bytes. Every event of the mirror's watch
 * comes through here, on every machine: decoding with protobufjs and then
 * converting to that object cost more than the rest of the read.
 */
function readWatchResponseFields(bytes: Buffer): WireWatchResponse {
  const response: WireWatchResponse = {};
  const reader = new WireReader(bytes);
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    switch (field) {
      case HEADER: {
        expectWireType(field, wireType, WIRE_LENGTH_DELIMITED);
        const { start, end } = reader.lengthDelimited();
        response.header = readHeader(new WireReader(bytes, start, end));
        break;
      }
      case WATCH_ID:
      case COMPACT_REVISION:
        expectWireType(field, wireType, WIRE_VARINT);
        response[field === WATCH_ID ? 'watch_id' : 'compact_revision'] = integerText(reader, true);
        break;
      case CREATED:
      case CANCELED:
      case FRAGMENT: {
        expectWireType(field, wireType, WIRE_VARINT);
        const set = reader.bigVarint() !== 0n;
        response[field === CREATED ? 'created' : field === CANCELED ? 'canceled' : 'fragment'] = set;
        break;
      }
      case CANCEL_REASON: {
        expectWireType(field, wireType, WIRE_LENGTH_DELIMITED);
        const { start, end } = reader.lengthDelimited();
        response.cancel_reason = bytes.toString('utf8', start, end);
        break;
      }
      default:
        reader.skip(wireType);
    }
  }
  return response;
}

function readHeader(reader: WireReader): WireHeader {
  const header: WireHeader = {};
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    const known = HEADER_FIELDS[field];
    if (known === undefined) {
      reader.skip(wireType);
      continue;
    }
    if (wireType !== WIRE_VARINT) throw new MalformedMessage(`ResponseHeader field ${field} has wire type ${wireType}`);
    header[known.name] = integerText(reader, known.signed);
  }
  return header;
}
