// The flood of bench/watch-flood.ts in a process of its own (forked with IPC),
// so that the probes' latency is the server's and not this client's event
// loop busy opening thousands of streams. Argv: address connections streams
// key rangeEnd. Reports { created, failed } every 100 ms; closes every stream
// when told 'close', reports once more and exits.
import { openWatchFlood } from '../../test/support/watch-flood';

const [address = '', connections = '0', streams = '0', key = '', rangeEnd = ''] = process.argv.slice(2);
const flood = openWatchFlood(address, {
  connections: Number(connections),
  streamsPerConnection: Number(streams),
  key: Buffer.from(key),
  rangeEnd: Buffer.from(rangeEnd),
});
const report = (): void => {
  process.send?.({ created: flood.created(), failed: flood.failed() });
};
const timer = setInterval(report, 100);
process.on('message', (message) => {
  if (message !== 'close') return;
  clearInterval(timer);
  report();
  flood.close();
  // Let the cancels reach the server before the connections go.
  setTimeout(() => process.exit(0), 500);
});
process.on('disconnect', () => process.exit(0));
