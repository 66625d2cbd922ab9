import cluster from 'node:cluster';
import { unwatchFile, watchFile } from 'node:fs';
import { ConfigError, describeOptions, loadConfig, type ProxyConfig } from './config';
import { createLogger, type Logger } from './log';
import { createMetrics, type Metrics } from './metrics';
import { quietMemory } from './core/quiet-memory';
import type { RunningProxy } from './proxy';
import type { RunningPrimary } from './workers/primary';
import type { RunningWorker } from './workers/worker';
import { quietIpServerNameWarning } from './tls/upstream-tls';
import { proxyVersion } from './version';

const USAGE = `Usage: etcd-cache-proxy <command> [flags]

Commands:
  start      run the proxy
  snapshot   save, restore or export snapshots of the mirror (etcd-cache-proxy snapshot help)
  demo       show a gateway's configuration surviving an etcd outage, in one command (throwaway etcd and proxy)
  version    print the version
  help       print this text

Flags for start (each also read from the environment and from --config-file;
flags win over the environment, which wins over the file):
${describeOptions()}
`;

/**
 * The only place that exits the process. Each command, and each role of
 * `start` (one process, --workers' primary, a worker), loads its own modules
 * when it runs: a proxy holds no demo, no snapshot commands, and an object
 * store's SDK only when it uses one; a --workers primary holds no serving side.
 */
async function main(argv: readonly string[]): Promise<number> {
  quietIpServerNameWarning();
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'snapshot': {
      const io = { out: (text: string) => process.stdout.write(text), err: (text: string) => process.stderr.write(text) };
      const [action, ...args] = rest;
      // Object storage sits above the snapshot files it moves: its commands are its own.
      if (action === 'push' || action === 'pull') return (await import('./objectstore/objectstore-command')).objectStoreCommand(action, args, io);
      if (action === 'keygen') return (await import('./objectstore/keygen-command')).keygenCommand(args, io);
      return (await import('./snapshot/snapshot-command')).snapshotCommand(rest, io);
    }
    case 'demo':
      return (await import('./demo/demo-command')).demoCommand(rest, {
        out: (text) => process.stdout.write(text),
        err: (text) => process.stderr.write(text),
        tty: process.stdout.isTTY === true,
        onOutputError: (listener) => process.stdout.on('error', listener),
      });
    case 'version':
    case '--version':
      process.stdout.write(`etcd-cache-proxy ${proxyVersion()}\nnode ${process.version}\n`);
      return 0;
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(
        command === undefined ? USAGE : `etcd-cache-proxy: unknown command '${command}'; try 'etcd-cache-proxy help'\n`,
      );
      return 2;
  }
}

async function start(args: readonly string[]): Promise<number> {
  let config;
  try {
    config = loadConfig({ argv: args, env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`etcd-cache-proxy: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  const metrics = createMetrics();
  // Every process (one proxy, a --workers primary, a worker) gives back what a busy period grew, once quiet.
  quietMemory();
  // A serving process of --workers N: the primary reloads and stops it.
  if (cluster.isWorker) return serveAsWorker(args, config, log, metrics);
  let proxy: RunningProxy | RunningPrimary;
  try {
    proxy =
      config.workers > 1
        ? await (await import('./workers/primary')).startPrimary({ config, log, metrics }, config.workers)
        : await (await import('./proxy')).startProxy({ config, log, metrics });
  } catch (error) {
    log.fatal({ err: error }, 'could not start');
    process.stderr.write(`etcd-cache-proxy: could not start: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  const running = proxy;
  // SIGHUP, or a change of the config file: read flags, environment and file again and apply what can be.
  const reload = (cause: string): void => {
    let next;
    try {
      next = loadConfig({ argv: args, env: process.env });
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [error instanceof Error ? error.message : String(error)];
      log.error({ cause, problems }, 'reloaded configuration refused; the running one stays');
      return;
    }
    running.reconfigure(next);
  };
  const onHangup = (): void => reload('SIGHUP');
  process.on('SIGHUP', onHangup);
  const configFile = config.configFile;
  const onFileChange = (): void => reload('config file changed');
  if (configFile !== null) watchFile(configFile, { interval: 1_000, persistent: false }, onFileChange);
  return drainOnSignal(log, () => running.close(), 'default', () => {
    process.off('SIGHUP', onHangup);
    if (configFile !== null) unwatchFile(configFile, onFileChange);
  });
}

/**
 * One of the --workers serving processes. SIGTERM and SIGINT drain it as a
 * single process drains; a reload comes from the primary (a SIGHUP sent to
 * the whole process group, as a terminal's hangup is, must not reload twice).
 * When the primary is gone, Node's cluster ends the worker.
 */
async function serveAsWorker(args: readonly string[], config: ProxyConfig, log: Logger, metrics: Metrics): Promise<number> {
  let worker: RunningWorker;
  try {
    worker = await (await import('./workers/worker')).startWorker({ config, log, metrics }, args);
  } catch (error) {
    log.fatal({ err: error }, 'serving process could not start');
    return 1;
  }
  const ignoreHangup = (): void => undefined;
  process.on('SIGHUP', ignoreHangup);
  // The same signal comes again from the primary (a service manager or a terminal signals every process
  // of the group): the drain has begun, so it is ignored rather than left to end the process.
  return drainOnSignal(log, () => worker.close(), 'ignore');
}

/**
 * SIGTERM or SIGINT: `close` drains the process; resolves with its exit code.
 * A signal that comes again during the drain ends the process at once
 * (`default`, as a second Ctrl-C does) or is ignored (`ignore`).
 */
function drainOnSignal(log: Logger, close: () => Promise<void>, repeated: 'default' | 'ignore', beforeClose: () => void = () => undefined): Promise<number> {
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'signal received');
      // Added before `stop` goes: with no listener at all, Node gives the signal its default action.
      if (repeated === 'ignore') {
        process.on('SIGTERM', ignore);
        process.on('SIGINT', ignore);
      }
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      beforeClose();
      close().then(
        () => resolve(0),
        (error: unknown) => {
          log.error({ err: error }, 'unclean stop');
          resolve(1);
        },
      );
    };
    const ignore = (): void => undefined;
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`etcd-cache-proxy: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
