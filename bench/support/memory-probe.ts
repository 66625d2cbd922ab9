// Preloaded (`node -r dist/bench/support/memory-probe.js ...`) into every Node
// process bench/memory.ts measures, so each reports its own heap: on SIGUSR2
// it writes process.memoryUsage() to ECP_MEMORY_PROBE_DIR/<pid>.json. The
// proxy's cluster workers inherit the flag (cluster forks with the primary's
// execArgv), so --workers N reports every process. It allocates nothing until
// asked.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.ECP_MEMORY_PROBE_DIR;
if (dir !== undefined && dir !== '') {
  process.on('SIGUSR2', () => {
    const usage = process.memoryUsage();
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ pid: process.pid, at: Date.now(), ...usage }));
  });
}
