import { Processes } from './processes';
import { Report } from './report';
import { findOrInstallEtcd } from './etcd-server';
import { demoDirectory, runWalkthrough } from './walkthrough';

export const DEMO_USAGE = `Usage: etcd-cache-proxy demo [--no-color]

Starts a throwaway etcd and the proxy in front of it (free loopback ports, a
temporary directory), loads an APISIX-like configuration, then kills etcd,
restarts the proxy during the outage and brings etcd back, checking and timing
what a gateway sees at each step. Exits 0 when every check passed. Ctrl-C stops
it and removes everything it started. Needs etcd on PATH (installed with
apt-get when run as root).
`;

export interface DemoIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Standard output is a terminal: colour is on unless turned off. */
  readonly tty: boolean;
  /** Calls `listener` if standard output fails (its reader went away: `npm run demo | head`). */
  readonly onOutputError: (listener: () => void) => void;
}

/** `etcd-cache-proxy demo` (npm run demo): the exit code. */
export async function demoCommand(args: readonly string[], io: DemoIo): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.out(DEMO_USAGE);
    return 0;
  }
  const unknown = args.filter((arg) => arg !== '--no-color');
  if (unknown.length > 0) {
    io.err(`etcd-cache-proxy demo: unknown flag '${unknown[0]}'; try 'etcd-cache-proxy demo --help'\n`);
    return 2;
  }
  const color = io.tty && !args.includes('--no-color') && (process.env.NO_COLOR ?? '') === '';
  const report = new Report(io.out, color);
  report.title("etcd-cache-proxy demo: a gateway's configuration through an etcd outage");
  const etcd = findOrInstallEtcd((text) => report.note(text));
  if (!etcd.found) {
    io.err(`etcd-cache-proxy demo: ${etcd.instruction}\n`);
    return 1;
  }
  const dir = demoDirectory();
  const processes = new Processes(dir);
  let interrupted: (cause: string) => void = () => undefined;
  const interruption = new Promise<string>((resolve) => (interrupted = resolve));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  // Nobody reads any more: stop as on Ctrl-C rather than die with etcd and the proxy left running.
  io.onOutputError(() => interrupted('output closed'));
  try {
    const outcome = await Promise.race([runWalkthrough(report, processes, dir, etcd.version), interruption]);
    if (typeof outcome === 'number') return outcome;
    report.mute();
    const stopped = processes.describe();
    await processes.cleanUp();
    io.err(`\netcd-cache-proxy demo: interrupted (${outcome}); stopped ${stopped.length === 0 ? 'nothing' : stopped.join(', ')} and removed ${dir}\n`);
    return 130;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await processes.cleanUp();
  }
}
