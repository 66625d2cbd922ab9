// Benchmark: protobuf answer to the gateway's JSON, in process, no network.
// src/gateway/wire-json.ts (walks the wire bytes) against the writer it
// replaced (test/support/decoded-json.ts: protobufjs decode, then objects to
// JSON), on the same bytes:
//
//   big    a RangeResponse of --keys keys (default 10 000) with --value-bytes
//          (900) values: a whole-prefix read of a large APISIX config
//   small  a RangeResponse of one 300-byte key, and a PutResponse (header only)
//
// Also times what the HTTP side does with the text next (Buffer.byteLength
// and the UTF-8 encoding res.end does), to show whether handing out a Buffer
// instead of a string would pay.
//
//   node --import tsx bench/wire-json.ts [--keys 10000] [--value-bytes 900] [--seconds 2]
import { parseArgs } from 'node:util';
import type { Type } from 'protobufjs';
import { lookupMessage } from '../src/gateway/proto-json';
import { wireToJson, wireToJsonBuffer } from '../src/gateway/wire-json';
import { decodedJson } from '../test/support/decoded-json';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '10000' },
    'value-bytes': { type: 'string', default: '900' },
    seconds: { type: 'string', default: '2' },
  },
});
const KEYS = Number(values.keys);
const VALUE_BYTES = Number(values['value-bytes']);
const SECONDS = Number(values.seconds);

const header = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: '123456', raft_term: '7' };

/** An APISIX-like route: JSON text padded to the wanted size. */
function routeValue(index: number, size: number): Buffer {
  const json = `{"uri":"/api/v1/service-${index}/*","upstream":{"type":"roundrobin","nodes":{"10.0.${index % 256}.${index % 199}:8080":1}},"plugins":{"limit-count":{"count":100,"time_window":60}},"desc":"`;
  return Buffer.from(json.padEnd(size - 2, 'x') + '"}');
}

function encode(type: Type, object: Record<string, unknown>): Buffer {
  return Buffer.from(type.encode(type.fromObject(object)).finish());
}

const range = lookupMessage('etcdserverpb.RangeResponse');
const put = lookupMessage('etcdserverpb.PutResponse');
const kv = (index: number, size: number): Record<string, unknown> => ({
  key: Buffer.from(`/apisix/routes/${String(index).padStart(8, '0')}`),
  create_revision: 1000 + index,
  mod_revision: 100_000 + index,
  version: 1 + (index % 5),
  value: routeValue(index, size),
});
const big = encode(range, { header, kvs: Array.from({ length: KEYS }, (_, i) => kv(i, VALUE_BYTES)), count: KEYS });
const smallRange = encode(range, { header, kvs: [kv(1, 300)], count: 1 });
const smallPut = encode(put, { header });

interface Timing {
  readonly perCallMs: number;
  readonly medianMs: number;
  /** CPU time of the whole process per call (user + system, GC threads included): less swayed than wall time by other loads on the machine. */
  readonly cpuPerCallMs: number;
  readonly calls: number;
}

/** Calls `run` for about SECONDS (after a warm-up), timing each call. */
function time(run: () => unknown): Timing {
  const warmUntil = performance.now() + Math.min(500, SECONDS * 250);
  while (performance.now() < warmUntil) run();
  const samples: number[] = [];
  const cpuStarted = process.cpuUsage();
  const started = performance.now();
  const until = started + SECONDS * 1000;
  while (performance.now() < until || samples.length < 3) {
    const t0 = performance.now();
    run();
    samples.push(performance.now() - t0);
  }
  const total = performance.now() - started;
  const cpu = process.cpuUsage(cpuStarted);
  samples.sort((a, b) => a - b);
  return { perCallMs: total / samples.length, medianMs: samples[Math.floor(samples.length / 2)] ?? 0, cpuPerCallMs: (cpu.user + cpu.system) / 1000 / samples.length, calls: samples.length };
}

function row(name: string, timing: Timing): string {
  const perSecond = 1000 / timing.perCallMs;
  const ms = (value: number): string => value.toFixed(value < 1 ? 4 : 2).padStart(9);
  return `${name.padEnd(48)} median ${ms(timing.medianMs)} ms  mean ${ms(timing.perCallMs)} ms  cpu ${ms(timing.cpuPerCallMs)} ms  ${perSecond.toFixed(perSecond < 100 ? 2 : 0).padStart(8)}/s  (${timing.calls} calls)`;
}

function main(): void {
  const text = wireToJson(range, big);
  if (text !== decodedJson(range, big) || !wireToJsonBuffer(range, big).equals(Buffer.from(text))) throw new Error('the writers disagree on the big answer');
  console.log(`big RangeResponse: ${KEYS} keys x ${VALUE_BYTES} B values, ${(big.length / 1e6).toFixed(1)} MB protobuf -> ${(text.length / 1e6).toFixed(1)} MB JSON`);
  console.log(row('  old: protobufjs decode + object writer', time(() => decodedJson(range, big))));
  console.log(row('  new: wireToJson (string)', time(() => wireToJson(range, big))));
  console.log(row('  new: wireToJsonBuffer (bytes)', time(() => wireToJsonBuffer(range, big))));
  // What sendComplete does with a string before it is on the wire; a Buffer needs neither step.
  console.log(row('  string, then Buffer.byteLength + UTF-8 encode', time(() => Buffer.byteLength(text) + Buffer.from(text, 'utf8').length)));
  console.log(`small RangeResponse (1 key, 300 B): ${smallRange.length} B`);
  console.log(row('  old', time(() => decodedJson(range, smallRange))));
  console.log(row('  new', time(() => wireToJson(range, smallRange))));
  console.log(row('  new, bytes', time(() => wireToJsonBuffer(range, smallRange))));
  console.log(`PutResponse (header only): ${smallPut.length} B`);
  console.log(row('  old', time(() => decodedJson(put, smallPut))));
  console.log(row('  new', time(() => wireToJson(put, smallPut))));
  console.log(row('  new, bytes', time(() => wireToJsonBuffer(put, smallPut))));
}

main();
