import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Bounds on what is read from /proc for one lookup: a machine with more is not one these tests run on. */
const MAX_TCP_TABLE_LINES = 100_000;
const MAX_FDS_PER_PROCESS = 100_000;

/** A TCP table row's port ("0100007F:1F90" is 127.0.0.1:8080; the port is big-endian hex on every architecture). */
function portOf(address: string): number {
  return Number.parseInt(address.slice(address.lastIndexOf(':') + 1), 16);
}

/**
 * The socket inode of the loopback TCP connection whose local port is
 * `localPort` and whose remote port is `remotePort`, from /proc/net/tcp (and
 * tcp6): the dialing end of a connection a server accepted, seen from the
 * dialer's side.
 */
function inodeOf(localPort: number, remotePort: number): string | undefined {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n').slice(1, MAX_TCP_TABLE_LINES);
    for (const line of lines) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      const [local, remote, inode] = [fields[1], fields[2], fields[9]];
      if (local === undefined || remote === undefined || inode === undefined) continue;
      if (portOf(local) === localPort && portOf(remote) === remotePort) return inode;
    }
  }
  return undefined;
}

function holdsSocket(pid: number, inode: string): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`).slice(0, MAX_FDS_PER_PROCESS);
  } catch {
    return false; // gone
  }
  const wanted = `socket:[${inode}]`;
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === wanted;
    } catch {
      return false; // closed meanwhile
    }
  });
}

/**
 * Which of `candidates` (by pid) dialed the loopback connection that a
 * server on `serverPort` accepted from `dialerPort`: on loopback every
 * process dials from 127.0.0.1, so the address cannot tell them apart, but
 * the dialer's socket is in the kernel's TCP table and among its fds.
 * Undefined when none of them holds it (another process, or already closed).
 */
export function dialerOf<T extends { readonly pid: number }>(dialerPort: number, serverPort: number, candidates: readonly T[]): T | undefined {
  const inode = inodeOf(dialerPort, serverPort);
  if (inode === undefined || inode === '0') return undefined;
  return candidates.find((candidate) => candidate.pid > 0 && holdsSocket(candidate.pid, inode));
}
