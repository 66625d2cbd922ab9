// What etcd itself counts, read from its members' /metrics and summed over
// them: the RPCs started by method, and the bytes sent to and received from
// clients. A benchmark reads them before and after a step, and the
// difference is what that step cost etcd.
import type { EtcdCluster } from '../../test/support/etcd-cluster';

export interface EtcdCounters {
  /** RPCs started, by "Service/Method". */
  readonly rpcs: Map<string, number>;
  readonly sentBytes: number;
  readonly receivedBytes: number;
}

export async function countersOf(cluster: EtcdCluster): Promise<EtcdCounters> {
  const rpcs = new Map<string, number>();
  let sentBytes = 0;
  let receivedBytes = 0;
  for (const member of cluster.members) {
    const text = await (await fetch(`${member.clientUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      const started = /^grpc_server_started_total\{grpc_method="(\w+)",grpc_service="[\w.]+\.(\w+)",grpc_type="\w+"\} (\S+)$/.exec(line);
      if (started !== null) rpcs.set(`${started[2]}/${started[1]}`, (rpcs.get(`${started[2]}/${started[1]}`) ?? 0) + Number(started[3]));
      if (line.startsWith('etcd_network_client_grpc_sent_bytes_total ')) sentBytes += Number(line.split(' ')[1]);
      if (line.startsWith('etcd_network_client_grpc_received_bytes_total ')) receivedBytes += Number(line.split(' ')[1]);
    }
  }
  return { rpcs, sentBytes, receivedBytes };
}

export function difference(after: EtcdCounters, before: EtcdCounters): EtcdCounters {
  const rpcs = new Map<string, number>();
  for (const [method, count] of after.rpcs) {
    const delta = count - (before.rpcs.get(method) ?? 0);
    if (delta > 0) rpcs.set(method, delta);
  }
  return { rpcs, sentBytes: after.sentBytes - before.sentBytes, receivedBytes: after.receivedBytes - before.receivedBytes };
}

export const total = (counters: EtcdCounters): number => [...counters.rpcs.values()].reduce((sum, n) => sum + n, 0);
