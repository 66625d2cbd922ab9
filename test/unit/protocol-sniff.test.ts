// Unit: deciding gRPC or HTTP/1.1 from a connection's first bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sniffProtocol } from '../../src/listener/protocol-listener';

const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

describe('sniffProtocol', () => {
  it('sends the HTTP/2 preface to gRPC, with or without frames after it', () => {
    assert.equal(sniffProtocol(Buffer.from(PREFACE)), 'grpc');
    assert.equal(sniffProtocol(Buffer.concat([Buffer.from(PREFACE), Buffer.from([0, 0, 0, 4, 0])])), 'grpc');
  });

  it('waits while the bytes so far are a prefix of the preface', () => {
    for (let length = 1; length < PREFACE.length; length += 1) {
      assert.equal(sniffProtocol(Buffer.from(PREFACE.slice(0, length))), 'undecided', `${length} bytes`);
    }
  });

  it('sends HTTP/1.x requests and anything else to the HTTP side', () => {
    for (const start of ['GET /health HTTP/1.1\r\n', 'POST /v3/kv/range HTTP/1.1\r\n', 'PRIX', 'PRI * HTTP/1.1\r\n', '\x16\x03\x01', 'garbage']) {
      assert.equal(sniffProtocol(Buffer.from(start, 'latin1')), 'http1', JSON.stringify(start));
    }
  });
});
