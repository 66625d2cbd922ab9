import { request as httpRequest } from 'node:http';
import { credentials, loadPackageDefinition, Metadata, type ChannelOptions, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { loadEtcdProto } from './etcd-proto';
import type { WireWatchResponse } from '../../src/etcd/wire';

// A watch flood and the probe that watches for its harm, for a test and for
// bench/watch-flood.ts: many connections, each opening many Watch streams at
// once (one watch each, as many informers or gateway processes starting
// together do), while another client makes a plain JSON Range on a new
// connection, as a gateway does, and notes how long it took or how it failed.

type WatchCall = ClientDuplexStream<object, WireWatchResponse>;
type WatchCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options: ChannelOptions) => Client & { Watch(metadata: Metadata): WatchCall };

export interface FloodOptions {
  readonly connections: number;
  readonly streamsPerConnection: number;
  /** The range each watch covers. */
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
}

export interface WatchFlood {
  /** Streams whose create has been answered with created (and not canceled). */
  created(): number;
  /** Streams that ended with an error status, or whose create was refused. */
  failed(): number;
  /** Events received over every stream. */
  events(): number;
  /** Per connection: when its first and its last created answer arrived (performance.now(); NaN before any). */
  createdWindows(): { first: number; last: number }[];
  /** Resolves once every stream is created, or rejects naming how many were (and failed) after `timeoutMs`. */
  allCreated(timeoutMs: number): Promise<void>;
  /** Cancels every stream and closes every connection. */
  close(): void;
}

/** Opens `connections` × `streamsPerConnection` Watch streams at once, one create each, without waiting for any answer. */
export function openWatchFlood(address: string, options: FloodOptions): WatchFlood {
  const root = loadPackageDefinition(loadEtcdProto()) as unknown as { etcdserverpb: { Watch: WatchCtor } };
  const clients: Client[] = [];
  const calls: WatchCall[] = [];
  let created = 0;
  let failed = 0;
  let events = 0;
  let closing = false;
  const windows: { first: number; last: number }[] = [];
  const request = { create_request: { key: options.key, range_end: options.rangeEnd } };
  for (let c = 0; c < options.connections; c += 1) {
    // Its own connection: grpc-js would otherwise share one for the address.
    const client = new root.etcdserverpb.Watch(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': -1 });
    clients.push(client);
    const window = { first: NaN, last: NaN };
    windows.push(window);
    for (let s = 0; s < options.streamsPerConnection; s += 1) {
      const call = client.Watch(new Metadata());
      call.on('data', (response: WireWatchResponse) => {
        if (response.created === true) {
          if (response.canceled === true) failed += 1;
          else created += 1;
          const at = performance.now();
          if (Number.isNaN(window.first)) window.first = at;
          window.last = at;
        }
        events += response.events?.length ?? 0;
      });
      call.on('error', () => {
        if (!closing) failed += 1;
      });
      call.write(request);
      calls.push(call);
    }
  }
  return {
    created: () => created,
    failed: () => failed,
    events: () => events,
    createdWindows: () => windows.map((w) => ({ ...w })),
    async allCreated(timeoutMs) {
      const total = options.connections * options.streamsPerConnection;
      const deadline = Date.now() + timeoutMs;
      while (created < total) {
        if (Date.now() > deadline) throw new Error(`after ${timeoutMs} ms only ${created} of ${total} watch streams were created (${failed} failed)`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    close() {
      closing = true;
      for (const call of calls) call.cancel();
      for (const client of clients) client.close();
    },
  };
}

export type ProbeOutcome = 'ok' | 'reset' | 'timeout' | 'http-error' | 'error';

export interface ProbeResult {
  readonly outcome: ProbeOutcome;
  /** performance.now() when it started. */
  readonly startedAt: number;
  /** From the request's start to its whole answer (or its failure), ms. */
  readonly ms: number;
  /** The error's code (ECONNRESET...) or the HTTP status, for anything but ok. */
  readonly detail?: string;
}

/**
 * One JSON-gateway Range (POST /v3/kv/range) on a new TCP connection, as a
 * gateway makes one: never rejects, says how it went.
 */
export function probeJsonRange(host: string, port: number, key: Buffer, timeoutMs: number): Promise<ProbeResult> {
  const started = performance.now();
  const body = JSON.stringify({ key: key.toString('base64') });
  return new Promise<ProbeResult>((resolve) => {
    let settled = false;
    const settle = (outcome: ProbeOutcome, detail?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ outcome, startedAt: started, ms: performance.now() - started, ...(detail === undefined ? {} : { detail }) });
    };
    const req = httpRequest(
      { host, port, method: 'POST', path: '/v3/kv/range', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) settle('http-error', String(res.statusCode));
          else {
            try {
              JSON.parse(Buffer.concat(chunks).toString('utf8'));
              settle('ok');
            } catch {
              settle('http-error', 'unparsable body');
            }
          }
        });
        res.on('error', (error: NodeJS.ErrnoException) => settle(error.code === 'ECONNRESET' ? 'reset' : 'error', error.code ?? error.message));
      },
    );
    const timer = setTimeout(() => {
      settle('timeout');
      req.destroy();
    }, timeoutMs);
    req.on('error', (error: NodeJS.ErrnoException) => settle(error.code === 'ECONNRESET' ? 'reset' : 'error', error.code ?? error.message));
    req.end(body);
  });
}

export interface Prober {
  readonly results: ProbeResult[];
  /** Stops probing and resolves once the probes in flight have settled. */
  stop(): Promise<void>;
}

/** A probe every `everyMs`, each on its own connection, none waiting for the one before. */
export function probeEvery(everyMs: number, probe: () => Promise<ProbeResult>): Prober {
  const results: ProbeResult[] = [];
  const inFlight = new Set<Promise<void>>();
  const fire = (): void => {
    const one = probe().then((result) => {
      results.push(result);
      inFlight.delete(one);
    });
    inFlight.add(one);
  };
  fire();
  const timer = setInterval(fire, everyMs);
  return {
    results,
    async stop() {
      clearInterval(timer);
      await Promise.all([...inFlight]);
    },
  };
}
