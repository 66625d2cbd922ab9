// CPU time from /proc, to say where a benchmark's time went.
import { readdirSync, readFileSync } from 'node:fs';

/** Linux's USER_HZ: /proc counts CPU time in these ticks. */
const CLOCK_TICKS_PER_SECOND = 100;

/** The fields of /proc/<pid>/stat after the command name, which may hold spaces and parentheses. */
function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU time a process has used so far (utime + stime, all its threads), seconds. */
export function cpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** A process and its live descendants, from /proc. */
export function processTree(pid: number): number[] {
  return [pid, ...childPids(pid).flatMap(processTree)];
}

/** The live children of a process (every thread's), from /proc. */
function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter((s) => s !== '').map(Number),
    );
  } catch {
    return []; // it exited meanwhile
  }
}

/**
 * CPU time of a process and its live descendants (a proxy with --workers, a
 * floor of several processes), seconds. A descendant that exits between two
 * readings takes its time with it: read around a run in which none does.
 */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  try {
    total = cpuSeconds(pid);
  } catch {
    return 0;
  }
  return total + childPids(pid).reduce((sum, child) => sum + treeCpuSeconds(child), 0);
}

/**
 * CPU time of this process's children that have exited and been waited for
 * (cutime + cstime), seconds: the difference around a spawnSync is what that
 * child used.
 */
export function reapedChildrenCpuSeconds(): number {
  const fields = statFields('self');
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND;
}

/** CPU time every core of the machine spent busy (not idle, not waiting for I/O) since boot, seconds. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLOCK_TICKS_PER_SECOND;
}
