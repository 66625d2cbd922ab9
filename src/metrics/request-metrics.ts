import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { CallCounts, ResultCounts } from './call-counts';
import { METRIC_PREFIX } from './metric-prefix';

/** What clients asked and how they were answered: calls, streams, the gateway, refusals, the answer cache. */
export interface RequestMetrics {
  /** Finished gRPC calls by service, method, status code name and source (count them with `calls`). */
  readonly grpcRequests: Counter<'service' | 'method' | 'code' | 'source'>;
  /** The hot path's way into grpcRequests. */
  readonly calls: CallCounts;
  readonly grpcRequestDuration: Histogram<'service' | 'method'>;
  /** Open gRPC streams (Watch, LeaseKeepAlive, Snapshot) by service and method. */
  readonly grpcStreamsOpen: Gauge<'service' | 'method'>;
  /** Client connections asked to move (graceful GOAWAY) before Node's HTTP/2 reset limit would end them (Node < 22.10). */
  readonly grpcConnectionsMoved: Counter;
  /** HTTP requests on the gateway side by path group and status. */
  readonly httpRequests: Counter<'path' | 'status'>;
  readonly writesRejected: Counter<'reason'>;
  readonly staleReads: Counter;
  readonly unchangedPutsAcknowledged: Counter;
  /** Mirror reads answered with a kept encoded answer (hit) or made anew (miss); count them with `cacheResults`. */
  readonly responseCacheRequests: Counter<'result'>;
  readonly cacheResults: ResultCounts<'hit' | 'miss'>;
  readonly responseCacheBytes: Gauge;
}

export function createRequestMetrics(registry: Registry): RequestMetrics {
  const calls = new CallCounts();
  const cacheResults = new ResultCounts<'hit' | 'miss'>();
  return {
    grpcRequests: new Counter({
      name: `${METRIC_PREFIX}grpc_requests_total`,
      help: 'gRPC calls finished, by service, method, status code and source of the answer',
      labelNames: ['service', 'method', 'code', 'source'],
      registers: [registry],
      collect() {
        calls.flush(this);
      },
    }),
    calls,
    grpcRequestDuration: new Histogram({
      name: `${METRIC_PREFIX}grpc_request_duration_seconds`,
      help: 'Latency of unary gRPC calls as seen by the proxy',
      labelNames: ['service', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    grpcStreamsOpen: new Gauge({
      name: `${METRIC_PREFIX}grpc_streams_open`,
      help: 'gRPC streams currently open, by service and method',
      labelNames: ['service', 'method'],
      registers: [registry],
    }),
    grpcConnectionsMoved: new Counter({
      name: `${METRIC_PREFIX}grpc_connections_moved_total`,
      help: 'Client connections asked to reconnect (GOAWAY NO_ERROR) before the HTTP/2 stream-reset limit of Node before 22.10 would have closed them with INTERNAL_ERROR',
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: `${METRIC_PREFIX}http_requests_total`,
      help: 'HTTP requests answered on the gateway side, by path and status',
      labelNames: ['path', 'status'],
      registers: [registry],
    }),
    writesRejected: new Counter({
      name: `${METRIC_PREFIX}writes_rejected_total`,
      help: 'Writes the proxy refused itself, by reason (readonly, upstream_lost)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    staleReads: new Counter({
      name: `${METRIC_PREFIX}stale_reads_total`,
      help: 'Reads answered from the mirror while the upstream could not confirm freshness',
      registers: [registry],
    }),
    unchangedPutsAcknowledged: new Counter({
      name: `${METRIC_PREFIX}unchanged_puts_acknowledged_total`,
      help: 'Puts of a value the mirror already held, acknowledged from the mirror while the upstream was lost (gateway start-up markers)',
      registers: [registry],
    }),
    responseCacheRequests: new Counter({
      name: `${METRIC_PREFIX}response_cache_requests_total`,
      help: 'Mirror reads by whether their encoded answer was kept from an identical read (hit) or made (miss)',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        cacheResults.flush(this);
      },
    }),
    cacheResults,
    responseCacheBytes: new Gauge({
      name: `${METRIC_PREFIX}response_cache_bytes`,
      help: 'Bytes of encoded answers kept for repeated mirror reads (bounded by --response-cache-bytes)',
      registers: [registry],
    }),
  };
}
