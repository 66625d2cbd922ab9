import type { IncomingMessage } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { scanValue, UNEXPECTED_EOF, type JsonValue } from './go-json';

/**
 * The largest request body the gateway reads for a unary call. Like the gRPC
 * side's ceiling, it sits far above etcd's own limit (1.5 MiB of protobuf by
 * default), so an oversize request still gets etcd's own answer; only bodies
 * no etcd would take are cut off here, before they fill memory.
 */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** The largest single request in a streaming body (a watch or keep-alive request is a few hundred bytes). */
export const MAX_STREAM_MESSAGE_BYTES = 4 * 1024 * 1024;

export type BodyResult =
  /** null: an empty body (Go's io.EOF), which etcd's gateway reads as an empty request. */
  | { readonly kind: 'json'; readonly value: JsonValue | null }
  | { readonly kind: 'invalid'; readonly message: string }
  | { readonly kind: 'too-large'; readonly limit: number }
  | { readonly kind: 'aborted' };

/** Reads a whole body (up to `limit` bytes) and takes the first JSON value from it, as Go's json.Decoder does. */
export function readJsonBody(request: IncomingMessage, limit = MAX_BODY_BYTES): Promise<BodyResult> {
  return new Promise((resolve) => {
    const declared = Number(request.headers['content-length'] ?? '0');
    if (declared > limit) {
      resolve({ kind: 'too-large', limit });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: BodyResult): void => {
      if (settled) return;
      settled = true;
      request.off('data', onData);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) settle({ kind: 'too-large', limit });
      else chunks.push(chunk);
    };
    request.on('data', onData);
    request.on('end', () => settle(parseFirstValue(Buffer.concat(chunks).toString('utf8'))));
    request.on('aborted', () => settle({ kind: 'aborted' }));
    request.on('error', () => settle({ kind: 'aborted' }));
  });
}

function parseFirstValue(text: string): BodyResult {
  const scanned = scanValue(text, 0, true);
  switch (scanned.kind) {
    case 'empty':
      return { kind: 'json', value: null };
    case 'incomplete':
      return { kind: 'invalid', message: UNEXPECTED_EOF };
    case 'error':
      return { kind: 'invalid', message: scanned.message };
    case 'value':
      return { kind: 'json', value: scanned.value };
  }
}

/**
 * The JSON values of a streaming request body (a watch stream's requests),
 * taken one by one as their last byte arrives, so each reaches the gRPC call
 * at once. Go's gateway reads them the same way, one Decode per request.
 */
export class JsonValueStream {
  private readonly decoder = new StringDecoder('utf8');
  /** Text received and not yet taken as a value. */
  private pending = '';

  /** Adds received bytes; returns the values now complete, then an error if the text went bad. */
  push(chunk: Buffer): { values: JsonValue[]; error?: BodyError } {
    this.pending += this.decoder.write(chunk);
    return this.take(false);
  }

  /** The body is over: whatever is left must be whitespace or complete values. */
  end(): { values: JsonValue[]; error?: BodyError } {
    this.pending += this.decoder.end();
    return this.take(true);
  }

  private take(final: boolean): { values: JsonValue[]; error?: BodyError } {
    const values: JsonValue[] = [];
    for (;;) {
      const scanned = scanValue(this.pending, 0, final);
      if (scanned.kind === 'value') {
        values.push(scanned.value);
        this.pending = this.pending.slice(scanned.end);
        continue;
      }
      if (scanned.kind === 'empty') {
        this.pending = '';
        return { values };
      }
      if (scanned.kind === 'error') return { values, error: { kind: 'invalid', message: scanned.message } };
      if (final) return { values, error: { kind: 'invalid', message: UNEXPECTED_EOF } };
      if (Buffer.byteLength(this.pending) > MAX_STREAM_MESSAGE_BYTES) return { values, error: { kind: 'too-large', limit: MAX_STREAM_MESSAGE_BYTES } };
      return { values };
    }
  }
}

export type BodyError = { readonly kind: 'invalid'; readonly message: string } | { readonly kind: 'too-large'; readonly limit: number };
