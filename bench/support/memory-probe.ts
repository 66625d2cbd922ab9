// Preloaded (`node -r dist/bench/support/memory-probe.js ...`) into every Node
// process bench/memory.ts measures, so each reports its own heap: on SIGUSR2
// it writes process.memoryUsage() to ECP_MEMORY_PROBE_DIR/<pid>.json. The
// proxy's cluster workers inherit the flag (cluster forks with the primary's
// execArgv), so --workers N reports every process. It allocates nothing until
// asked. With ECP_MEMORY_PROBE_GC=1 it also runs a full garbage collection
// after reading and reports the usage again (`afterGc`): what a process would
// hold if V8 collected now, for telling garbage from what is kept.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const dir = process.env.ECP_MEMORY_PROBE_DIR;
if (dir !== undefined && dir !== '') {
  let collect: (() => void) | null = null;
  if (process.env.ECP_MEMORY_PROBE_GC === '1') {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  // V8's young generation as it stands (it grows under load and shrinks only when V8 decides to).
  const newSpace = (): number => getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? NaN;
  process.on('SIGUSR2', () => {
    const usage = { ...process.memoryUsage(), newSpace: newSpace() };
    collect?.();
    const afterGc = collect === null ? undefined : { ...process.memoryUsage(), newSpace: newSpace() };
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ pid: process.pid, at: Date.now(), ...usage, afterGc }));
  });
}
