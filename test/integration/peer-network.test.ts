// Integration (loopback sockets, no etcd): the robustness run's peer network, the forwarders that stand
// between etcd members so that one can be cut off from its peers. A link passes bytes both ways; cutting a
// member drops the links to it and the links it dialed (told apart by the kernel's socket table, though
// every dialer is 127.0.0.1), holds new ones without a byte through, and healing lets links through again.
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PeerNetwork } from '../support/peer-network';
import { dialerOf } from '../support/socket-owner';
import { sleep, until } from '../support/until';

/** A dialed connection and what came back on it. */
interface Dialed {
  readonly socket: Socket;
  received: string;
  closed: boolean;
}

function dial(port: number): Promise<Dialed> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const dialed: Dialed = { socket, received: '', closed: false };
    socket.setEncoding('utf8').on('data', (chunk: string) => (dialed.received += chunk));
    socket.on('close', () => (dialed.closed = true));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve(dialed));
    socket.once('error', reject);
  });
}

async function echoes(dialed: Dialed, text: string): Promise<void> {
  dialed.socket.write(text);
  await until(`the echo of ${text}`, () => dialed.received.includes(text), 5_000, 10);
}

describe('peer network', () => {
  let echo: Server;
  let echoPort: number;
  /** This process as the member that dials: the kernel tells its sockets apart from any other process's. */
  const self = { name: 'self', pid: process.pid };
  let network: PeerNetwork;
  let toA: number;

  before(async () => {
    echo = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const address = echo.address();
    echoPort = typeof address === 'object' && address !== null ? address.port : 0;
    network = new PeerNetwork(() => [self, { name: 'other', pid: 1 }]);
    toA = await network.forwarder('a', echoPort);
  });

  after(async () => {
    await network.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  it('tells which process dialed a loopback connection', async () => {
    const accepted = new Promise<Socket>((resolve) => echo.once('connection', resolve));
    const dialed = await dial(echoPort);
    const socket = await accepted;
    assert.equal(dialerOf(socket.remotePort ?? 0, socket.localPort ?? 0, [{ name: 'other', pid: 1 }, self])?.name, 'self');
    assert.equal(dialerOf(socket.remotePort ?? 0, socket.localPort ?? 0, [{ name: 'other', pid: 1 }]), undefined);
    dialed.socket.destroy();
  });

  it('passes bytes both ways', async () => {
    const dialed = await dial(toA);
    await echoes(dialed, 'hello');
    dialed.socket.destroy();
  });

  it('cutting off the dialer drops its links and holds new ones until healed', async () => {
    const before = await dial(toA);
    await echoes(before, 'one');
    assert.deepEqual(network.cutOff('self'), { dropped: 1 });
    await until('the link self dialed to be dropped', () => before.closed, 5_000, 10);
    const during = await dial(toA);
    during.socket.write('two');
    await sleep(300);
    assert.equal(during.received, '', 'a link dialed by the cut member passed bytes');
    assert.equal(during.closed, false, 'a new link is held, not refused');
    network.heal();
    await until('the held link to be dropped when healed', () => during.closed, 5_000, 10);
    const healed = await dial(toA);
    await echoes(healed, 'three');
    healed.socket.destroy();
  });

  it('cutting off a member drops the links to it, whoever dialed them', async () => {
    const dialed = await dial(toA);
    await echoes(dialed, 'four');
    assert.deepEqual(network.cutOff('a'), { dropped: 1 });
    await until('the link to a to be dropped', () => dialed.closed, 5_000, 10);
    const other = await dial(toA);
    other.socket.write('five');
    await sleep(300);
    assert.equal(other.received, '');
    network.heal();
    await until('the held link to be dropped when healed', () => other.closed, 5_000, 10);
    assert.equal(network.unknownDialers, 0);
  });
});
