import { createSocket, type Socket } from 'node:dgram';

/** Records a test DNS server answers; names without the trailing dot. */
export interface DnsRecords {
  srv?: Record<string, { target: string; port: number; priority?: number; weight?: number }[]>;
  a?: Record<string, string>;
}

export interface DnsServer {
  /** "127.0.0.1:PORT" */
  readonly address: string;
  /** Names asked, with their type, in order. */
  readonly queries: { name: string; type: number }[];
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_SRV = 33;

function encodeName(name: string): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
}

function readQuestion(message: Buffer): { name: string; type: number; end: number } {
  const labels: string[] = [];
  let offset = 12;
  while (message[offset] !== 0) {
    const length = message[offset] ?? 0;
    labels.push(message.subarray(offset + 1, offset + 1 + length).toString('ascii'));
    offset += 1 + length;
  }
  const type = message.readUInt16BE(offset + 1);
  return { name: labels.join('.').toLowerCase(), type, end: offset + 5 };
}

function record(type: number, data: Buffer): Buffer {
  const fixed = Buffer.alloc(12);
  fixed.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
  fixed.writeUInt16BE(type, 2);
  fixed.writeUInt16BE(1, 4); // IN
  fixed.writeUInt32BE(5, 6); // TTL
  fixed.writeUInt16BE(data.length, 10);
  return Buffer.concat([fixed, data]);
}

/**
 * A minimal authoritative DNS server over UDP on loopback, for discovery
 * tests (unit-level DNS, real sockets): answers SRV and A questions from a
 * table, NXDOMAIN for anything else. Records may be changed while it runs.
 */
export async function startDnsServer(records: DnsRecords): Promise<DnsServer & { records: DnsRecords }> {
  const socket: Socket = createSocket('udp4');
  const queries: { name: string; type: number }[] = [];
  const state = { records };
  socket.on('message', (message, peer) => {
    if (message.length < 17) return;
    const question = readQuestion(message);
    queries.push({ name: question.name, type: question.type });
    const answers: Buffer[] = [];
    if (question.type === TYPE_SRV) {
      for (const srv of state.records.srv?.[question.name] ?? []) {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(srv.priority ?? 0, 0);
        fixed.writeUInt16BE(srv.weight ?? 0, 2);
        fixed.writeUInt16BE(srv.port, 4);
        answers.push(record(TYPE_SRV, Buffer.concat([fixed, encodeName(srv.target)])));
      }
    } else if (question.type === TYPE_A) {
      const address = state.records.a?.[question.name];
      if (address !== undefined) answers.push(record(TYPE_A, Buffer.from(address.split('.').map(Number))));
    }
    const header = Buffer.alloc(12);
    message.copy(header, 0, 0, 2); // the ID
    header.writeUInt16BE(answers.length > 0 ? 0x8580 : 0x8583, 2); // response, authoritative; NXDOMAIN when empty
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    socket.send(Buffer.concat([header, message.subarray(12, question.end), ...answers]), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  return {
    address: `127.0.0.1:${port}`,
    queries,
    get records() {
      return state.records;
    },
    set records(next: DnsRecords) {
      state.records = next;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
