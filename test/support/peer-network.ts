import { connect, createServer, type Server, type Socket } from 'node:net';
import { dialerOf } from './socket-owner';

/** A member as the network knows it: its name, and its pid now (a restart changes it). */
export interface PeerNetworkMember {
  readonly name: string;
  readonly pid: number;
}

/** One connection a member's peer forwarder accepted. */
interface Link {
  /** The member whose peer port it leads to. */
  readonly to: string;
  readonly downstream: Socket;
  upstream: Socket | null;
  /** The member that dialed it, once asked (undefined: not asked yet; null: none of the members). */
  from: string | null | undefined;
}

/** Links held open at once, beyond which new ones are refused: a cluster of a few members keeps a few dozen. */
const MAX_LINKS = 2_000;

/**
 * The members' peer traffic, through a TCP forwarder of ours in front of
 * each member's peer port: the cluster advertises the forwarders' ports as
 * its peer URLs, so every byte between two members passes here, and one
 * member can be cut off from its peers while clients still reach it (a
 * network partition on loopback, where namespaces are not at hand). A link's
 * dialer is told by the kernel's socket table (socket-owner.ts): every
 * member dials from 127.0.0.1.
 */
export class PeerNetwork {
  private readonly servers: Server[] = [];
  private readonly links = new Set<Link>();
  /** The member cut off from its peers, or null. */
  private cut: string | null = null;
  /** Links accepted while cut that lead to or come from the cut member: held without a byte through, dropped when healed. */
  private readonly held = new Set<Link>();
  /** Links to another member whose dialer was none of the members when asked (let through): the report says how many. */
  unknownDialers = 0;

  constructor(private readonly members: () => readonly PeerNetworkMember[]) {}

  /** A forwarder to member `name`'s peer port `targetPort`; resolves with the port peers are to dial. */
  async forwarder(name: string, targetPort: number): Promise<number> {
    const server = createServer((socket) => this.accept(name, targetPort, socket));
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('peer forwarder has no port');
    return address.port;
  }

  /**
   * Cuts member `name` off from its peers: every link to or from it is
   * dropped, and new ones are held without passing a byte until `heal()`.
   * Its client port is untouched.
   */
  cutOff(name: string): { dropped: number } {
    this.cut = name;
    let dropped = 0;
    for (const link of [...this.links]) {
      if (!this.touches(link, name)) continue;
      this.drop(link);
      dropped += 1;
    }
    return { dropped };
  }

  /** Lets every link through again; the links held while cut are dropped (their dialers dial again). */
  heal(): void {
    this.cut = null;
    for (const link of [...this.held]) this.drop(link);
  }

  async close(): Promise<void> {
    for (const link of [...this.links]) this.drop(link);
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }

  private accept(to: string, targetPort: number, downstream: Socket): void {
    const link: Link = { to, downstream, upstream: null, from: undefined };
    downstream.on('error', () => this.drop(link));
    downstream.on('close', () => this.drop(link));
    if (this.links.size >= MAX_LINKS) {
      downstream.destroy();
      return;
    }
    this.links.add(link);
    if (this.cut !== null && this.touches(link, this.cut)) {
      downstream.pause();
      this.held.add(link);
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    link.upstream = upstream;
    upstream.on('error', () => this.drop(link));
    upstream.on('close', () => this.drop(link));
    downstream.setNoDelay(true);
    upstream.setNoDelay(true);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  }

  /** Whether the link leads to member `name` or was dialed by it (asked of the kernel once per link). */
  private touches(link: Link, name: string): boolean {
    if (link.to === name) return true;
    if (link.from === undefined) {
      const { remotePort, localPort } = link.downstream;
      link.from = remotePort === undefined || localPort === undefined ? null : (dialerOf(remotePort, localPort, this.members())?.name ?? null);
      if (link.from === null) this.unknownDialers += 1;
    }
    return link.from === name;
  }

  private drop(link: Link): void {
    this.links.delete(link);
    this.held.delete(link);
    link.downstream.destroy();
    link.upstream?.destroy();
  }
}
