// Unit (no etcd: a grpc-js server in this process with two etcd methods of
// its own): the JSON gateway's in-memory connection to the proxy's gRPC
// services hands over to a fresh connection after a number of calls (HTTP/2
// stream IDs run out after 2^30 streams), and a long call open on the old
// one keeps going there.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Server, status, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { serviceMethods } from '../../src/api/proto';
import { createGrpcLoopback, type CallStatus, type GrpcLoopback, type LoopbackCall } from '../../src/gateway/grpc-loopback';
import { until } from '../support/until';

const status$ = serviceMethods('etcdserverpb.Maintenance');
const watch$ = serviceMethods('etcdserverpb.Watch');

/** Collects a call's messages and its end. */
function follow(call: LoopbackCall): { messages: Buffer[]; ended: Promise<CallStatus> } {
  const messages: Buffer[] = [];
  call.on('message', (message) => messages.push(message));
  return { messages, ended: new Promise((resolve) => call.once('status', resolve)) };
}

describe('gateway loopback connection', () => {
  let server: Server;
  let loopback: GrpcLoopback;

  before(() => {
    server = new Server();
    server.addService({ Status: status$.Status } as unknown as ServiceDefinition, {
      Status: (_call: unknown, callback: (error: null, response: object) => void) => callback(null, { version: '3.4.0-test' }),
    });
    // Answers every watch request with a response carrying the same watch ID: a call that stays open.
    server.addService({ Watch: watch$.Watch } as unknown as ServiceDefinition, {
      Watch: (call: ServerDuplexStream<{ create_request?: object; cancel_request?: { watch_id?: string } }, object>) => {
        call.on('data', (request) => call.write({ watch_id: request.cancel_request?.watch_id ?? '7', created: request.create_request !== undefined }));
        call.on('end', () => call.end());
      },
    });
    loopback = createGrpcLoopback(server, { callsPerConnection: 3 });
  });
  after(() => {
    loopback.close();
    server.forceShutdown();
  });

  it('moves new calls to a fresh connection after the limit; a long call stays on its own', async () => {
    const encodeWatch = (request: object): Buffer => watch$.Watch?.requestSerialize(request) ?? Buffer.alloc(0);
    const longCall = loopback.call('/etcdserverpb.Watch/Watch', { metadata: [], timeout: null });
    const long = follow(longCall);
    longCall.write(encodeWatch({ create_request: { key: Buffer.from('a') } }));

    for (let i = 0; i < 10; i += 1) {
      const call = loopback.call('/etcdserverpb.Maintenance/Status', { metadata: [], timeout: '5S' });
      const unary = follow(call);
      call.write(Buffer.alloc(0));
      call.end();
      const ended = await unary.ended;
      assert.equal(ended.code, status.OK, ended.details);
      const answer = status$.Status?.responseDeserialize(unary.messages[0] ?? Buffer.alloc(0)) as { version?: string };
      assert.equal(answer.version, '3.4.0-test');
    }
    // 11 calls at 3 per connection: four connections.
    assert.equal(loopback.connectionsOpened(), 4);

    longCall.write(encodeWatch({ cancel_request: { watch_id: '42' } }));
    await until('the cancel answered on the long call', () => long.messages.length >= 2, 5_000, 10);
    const replies = long.messages.map((message) => watch$.Watch?.responseDeserialize(message) as { watch_id?: string });
    assert.deepEqual(replies.map((reply) => reply.watch_id), ['7', '42'], 'the first connection still carries the long call');
    longCall.end();
    assert.equal((await long.ended).code, status.OK);
  });
});
