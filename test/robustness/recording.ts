import type { FaultRecord, LeaseRecord, OperationRecord, Request, WatchRecord } from './history';
import type { KvClient } from './kv-client';

/** Everything the clients and the fault injector did, as it happened. */
export class Recording {
  readonly operations: OperationRecord[] = [];
  readonly watches: WatchRecord[] = [];
  readonly faults: FaultRecord[] = [];
  readonly leases: LeaseRecord[] = [];
  private lastId = 0;

  nextId = (): number => (this.lastId += 1);

  /** Sends `request` and records it with its answer. */
  async send(client: string, via: string, kv: KvClient, request: Request): Promise<OperationRecord> {
    const start = performance.now();
    const result = await kv.send(request);
    const record: OperationRecord = { type: 'op', id: this.nextId(), client, via, request, start, end: performance.now(), result };
    this.operations.push(record);
    return record;
  }

  watch = (watch: WatchRecord): void => {
    this.watches.push(watch);
  };

  fault(name: string, target: string): FaultRecord {
    const record: FaultRecord = { type: 'fault', at: performance.now(), name, target };
    this.faults.push(record);
    return record;
  }
}
