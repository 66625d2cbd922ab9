import pino, { type Logger } from 'pino';
import type { LogLevel } from './settings/types';

export type { Logger };

/**
 * One JSON logger per process, handed down explicitly; components take a
 * child with their own bindings (`log.child({ component: 'upstream' })`).
 */
export function createLogger(level: LogLevel, destination: pino.DestinationStream = pino.destination(2)): Logger {
  const children = new Set<Logger>();
  const root = pino(
    {
      level,
      base: { pid: process.pid, service: 'etcd-cache-proxy' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      onChild: (child) => children.add(child),
    },
    destination,
  );
  childrenOf.set(root, children);
  return root;
}

/** Children copy their parent's level when they are made; a reload must reach them too. */
const childrenOf = new WeakMap<Logger, Set<Logger>>();

/** Changes the level of a logger and of every child made from it (SIGHUP). */
export function setLogLevel(root: Logger, level: LogLevel): void {
  root.level = level;
  for (const child of childrenOf.get(root) ?? []) child.level = level;
}
