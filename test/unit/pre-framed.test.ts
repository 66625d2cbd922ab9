// Unit (loopback only, no etcd): answers made with their gRPC frame around
// them reach a grpc-js client byte for byte, and so do ordinary answers, on
// the same server; the frame is handed to HTTP/2 as it is.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, Server, ServerCredentials, type ServiceError } from '@grpc/grpc-js';
import { allocateFramed, batchMessages, frameOf, GRPC_FRAME_PREFIX_BYTES, messagesOf } from '../../src/etcd/grpc-frame';
import { passBytes } from '../../src/etcd/proto';
import { sendPreFramedAnswers } from '../../src/grpc/pre-framed';

const PATH = '/test.Echo/Answer';
const STREAM_PATH = '/test.Echo/Stream';
/** What the streaming method writes: the request names how many messages, and how many writes they take. */
function streamed(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(`message ${i} `.repeat(1 + (i % 5))));
}

function framedCopy(bytes: Buffer): Buffer {
  const message = allocateFramed(bytes.length);
  bytes.copy(message);
  return message;
}

describe('pre-framed answers', () => {
  let server: Server;
  let client: Client;
  const answers = new Map<string, Buffer>();

  before(async () => {
    sendPreFramedAnswers();
    server = new Server({ 'grpc.max_send_message_length': -1 });
    server.addService(
      {
        Answer: { path: PATH, requestStream: false, responseStream: false, requestSerialize: passBytes, requestDeserialize: passBytes, responseSerialize: passBytes, responseDeserialize: passBytes },
        Stream: { path: STREAM_PATH, requestStream: false, responseStream: true, requestSerialize: passBytes, requestDeserialize: passBytes, responseSerialize: passBytes, responseDeserialize: passBytes },
      },
      {
        Answer: (call: { request: Buffer }, callback: (error: null, value: Buffer) => void) => callback(null, answers.get(call.request.toString()) ?? Buffer.alloc(0)),
        // Writes the messages in batches of three (the last batch may hold fewer), then ends.
        Stream: (call: { request: Buffer; write(message: Buffer): boolean; end(): void }) => {
          const messages = streamed(Number(call.request.toString()));
          for (let at = 0; at < messages.length; at += 3) {
            const group = messages.slice(at, at + 3);
            call.write(group.length === 1 && group[0] !== undefined ? group[0] : batchMessages(group));
          }
          call.end();
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  });
  after(() => {
    client?.close();
    server?.forceShutdown();
  });

  const ask = (name: string): Promise<Buffer> =>
    new Promise((resolve, reject) => client.makeUnaryRequest(PATH, passBytes, passBytes, Buffer.from(name), (error: ServiceError | null, value?: Buffer) => (error ? reject(error) : resolve(value ?? Buffer.alloc(0)))));

  it('writes the prefix in front of the message it hands out', () => {
    const message = framedCopy(Buffer.from('hello'));
    const frame = frameOf(message);
    assert.ok(frame !== undefined);
    assert.equal(frame.length, GRPC_FRAME_PREFIX_BYTES + 5);
    assert.deepEqual([...frame.subarray(0, GRPC_FRAME_PREFIX_BYTES)], [0, 0, 0, 0, 5]);
    assert.equal(frame.subarray(GRPC_FRAME_PREFIX_BYTES).toString(), 'hello');
    assert.equal(frameOf(Buffer.from('hello')), undefined, 'an ordinary buffer has no frame');
  });

  it('hands grpc-js the frame itself instead of a copy', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const internals = require('@grpc/grpc-js/build/src/server-interceptors') as { BaseServerInterceptingCall: { prototype: { serializeMessage(this: unknown, value: unknown): Buffer } } };
    const serialize = internals.BaseServerInterceptingCall.prototype.serializeMessage;
    const call = { handler: { serialize: passBytes } };
    const message = framedCopy(Buffer.from('kept answer'));
    assert.equal(serialize.call(call, message), frameOf(message), 'the same buffer: nothing copied');
    const plain = serialize.call(call, Buffer.from('other'));
    assert.deepEqual([...plain.subarray(0, GRPC_FRAME_PREFIX_BYTES)], [0, 0, 0, 0, 5]);
    assert.equal(plain.subarray(GRPC_FRAME_PREFIX_BYTES).toString(), 'other');
  });

  it('sends a batch as its messages, in order, and keeps them for writers of one message at a time', async () => {
    const messages = [Buffer.from('a'), Buffer.from(''), Buffer.alloc(70_000, 7)];
    const batch = batchMessages(messages);
    assert.deepEqual(messagesOf(batch), messages);
    assert.equal(messagesOf(messages[0] ?? Buffer.alloc(0)), undefined);
    assert.equal(frameOf(batch)?.length, messages.reduce((sum, m) => sum + GRPC_FRAME_PREFIX_BYTES + m.length, 0));
    for (const count of [1, 3, 7, 100]) {
      const received = await new Promise<Buffer[]>((resolve, reject) => {
        const got: Buffer[] = [];
        const stream = client.makeServerStreamRequest(STREAM_PATH, passBytes, passBytes, Buffer.from(String(count)));
        stream.on('data', (message: Buffer) => got.push(message));
        stream.on('error', reject);
        stream.on('end', () => resolve(got));
      });
      assert.deepEqual(received.map(String), streamed(count).map(String));
    }
  });

  it('sends framed and ordinary answers, small, empty and large, exactly', async () => {
    const large = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < large.length; i += 1) large[i] = (i * 31) % 251;
    answers.set('framed-large', framedCopy(large));
    answers.set('framed-small', framedCopy(Buffer.from([1, 2, 3])));
    answers.set('framed-empty', framedCopy(Buffer.alloc(0)));
    answers.set('plain-large', Buffer.from(large));
    answers.set('plain-small', Buffer.from([9, 8, 7]));
    for (let round = 0; round < 3; round += 1) {
      assert.ok((await ask('framed-large')).equals(large));
      assert.deepEqual([...(await ask('framed-small'))], [1, 2, 3]);
      assert.equal((await ask('framed-empty')).length, 0);
      assert.ok((await ask('plain-large')).equals(large));
      assert.deepEqual([...(await ask('plain-small'))], [9, 8, 7]);
    }
    const framed = answers.get('framed-large');
    assert.ok(framed !== undefined && framed.equals(large), 'sending never changes the kept answer');
  });
});
