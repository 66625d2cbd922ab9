// What a proxy process says of itself on /metrics, read by the fleet
// benchmark: one plain series, and the calls it started upstream by reason.

/** The value of the unlabelled series `name` (0 when absent). */
export async function metricOf(address: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? 0);
}

/** The calls the proxy at `address` started upstream so far, by "method reason". */
export async function upstreamCallsOf(address: string): Promise<Map<string, number>> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const calls = new Map<string, number>();
  for (const match of text.matchAll(/^etcd_cache_proxy_upstream_calls_total\{method="([^"]+)",reason="([^"]+)"\} (\S+)$/gm)) {
    calls.set(`${match[1]} ${match[2]}`, Number(match[3]));
  }
  return calls;
}

/** The upstream calls of the proxies at `addresses`, summed by "method reason". */
export async function sumCalls(addresses: readonly string[]): Promise<Map<string, number>> {
  const sum = new Map<string, number>();
  for (const address of addresses) for (const [series, count] of await upstreamCallsOf(address)) sum.set(series, (sum.get(series) ?? 0) + count);
  return sum;
}
