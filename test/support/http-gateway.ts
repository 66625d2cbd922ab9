import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { until, untilValue } from './until';

/** One answer of etcd's HTTP/JSON gateway (or the proxy's). */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: unknown;
  readonly elapsedMs: number;
}

/** "http://127.0.0.1:2379" + "/v3/kv/range": one request, the whole answer. Bodies are sent exactly as given. */
export async function httpCall(
  baseUrl: string,
  path: string,
  body: string | Buffer | null,
  options: { method?: string; headers?: Record<string, string>; timeoutMs?: number; localAddress?: string } = {},
): Promise<HttpAnswer> {
  const started = Date.now();
  const url = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      url,
      {
        method: options.method ?? (body === null ? 'GET' : 'POST'),
        headers: { ...(body === null ? {} : { 'content-length': String(Buffer.byteLength(body)) }), ...options.headers },
        timeout: options.timeoutMs ?? 10_000,
        // Another loopback address (127.0.0.2) is another client source to the proxy.
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json: parseJson(text), elapsedMs: Date.now() - started }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${path}: no answer within ${options.timeoutMs ?? 10_000} ms`)));
    request.on('error', reject);
    request.end(body ?? undefined);
  });
}

/** A JSON request body with bytes fields spelled as etcd's gateway takes them. */
export const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64');

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * A streaming gateway call (POST /v3/watch): the request body may stay open
 * (more requests written later) or be sent whole; the answer is read object
 * by object as it streams.
 */
export class HttpStream {
  /** Every object the answer carried so far, in order ({"result":...} or {"error":...}). */
  readonly objects: Record<string, unknown>[] = [];
  status = 0;
  headers: IncomingHttpHeaders = {};
  ended = false;
  private buffered = '';
  private readonly request: ClientRequest;
  private response: IncomingMessage | null = null;
  private failure: Error | null = null;

  constructor(baseUrl: string, path: string, options: { body?: string; keepOpen?: boolean; headers?: Record<string, string> } = {}) {
    const url = new URL(path, baseUrl);
    this.request = httpRequest(url, { method: 'POST', headers: { 'transfer-encoding': 'chunked', ...options.headers } }, (response) => {
      this.response = response;
      this.status = response.statusCode ?? 0;
      this.headers = response.headers;
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => this.receive(chunk));
      response.on('end', () => {
        this.receive('', true);
        this.ended = true;
      });
      response.on('error', () => (this.ended = true));
    });
    this.request.on('error', (error) => {
      this.failure = error;
      this.ended = true;
    });
    if (options.body !== undefined) this.request.write(options.body);
    if (options.keepOpen !== true) this.request.end();
    else this.request.flushHeaders();
  }

  /** Sends one more request object on the open body. */
  send(request: object): void {
    this.request.write(JSON.stringify(request));
  }

  endBody(): void {
    this.request.end();
  }

  /** The `result` objects (watch responses) received so far. */
  results<T = Record<string, unknown>>(): T[] {
    return this.objects.filter((o) => 'result' in o).map((o) => o.result as T);
  }

  /** Waits until at least `count` objects arrived (or the answer ended). */
  async waitFor(count: number, timeoutMs = 10_000): Promise<void> {
    await until(
      () => `${count} stream objects (got ${this.objects.length}): ${JSON.stringify(this.objects).slice(0, 2000)}`,
      () => {
        if (this.objects.length >= count) return true;
        if (this.failure !== null) throw this.failure;
        if (this.ended) throw new Error(`stream ended after ${this.objects.length} objects, wanted ${count}: ${JSON.stringify(this.objects).slice(0, 2000)}`);
        return false;
      },
      timeoutMs,
      20,
    );
  }

  /** Waits until an object matching `predicate` arrived; returns it. */
  async waitUntil(what: string, predicate: (object: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return untilValue(
      () => `${what} on the stream: ${JSON.stringify(this.objects).slice(-2000)}`,
      async () => {
        const found = this.objects.find(predicate);
        if (found !== undefined) return found;
        if (this.failure !== null) throw this.failure;
        if (this.ended) throw new Error(`no ${what} on the stream (it ended): ${JSON.stringify(this.objects).slice(-2000)}`);
        return undefined;
      },
      timeoutMs,
      20,
    );
  }

  /** Waits for the answer to end. */
  async waitForEnd(timeoutMs = 10_000): Promise<void> {
    await until('the stream to end', () => this.ended, timeoutMs, 20);
  }

  close(): void {
    this.request.destroy();
    this.response?.destroy();
  }

  /** etcd's gateway ends each result with a newline, and an error object without one: read object by object. */
  private receive(chunk: string, final = false): void {
    this.buffered += chunk;
    for (;;) {
      const trimmed = this.buffered.trimStart();
      if (trimmed === '') {
        this.buffered = '';
        return;
      }
      const end = objectEnd(trimmed);
      if (end < 0) {
        if (final) throw new Error(`stream ended inside an object: ${trimmed.slice(0, 200)}`);
        this.buffered = trimmed;
        return;
      }
      this.objects.push(JSON.parse(trimmed.slice(0, end)) as Record<string, unknown>);
      this.buffered = trimmed.slice(end);
    }
  }
}

/** Index just past the first complete JSON object of `text`, or -1. */
function objectEnd(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}
