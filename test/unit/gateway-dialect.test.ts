// Unit: the gateway answers in the dialect of the etcd version behind it
// (etcd 3.4's grpc-gateway, or 3.5's), as measured against etcd 3.4.23 and 3.5.16.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { dialectFor } from '../../src/gateway/gateway-dialect';

describe('gateway dialect by etcd version', () => {
  it("picks 3.5's from 3.5 on, 3.4's for older or unknown versions", () => {
    assert.equal(dialectFor('3.5.16').name, '3.5');
    assert.equal(dialectFor('3.6.0').name, '3.5');
    assert.equal(dialectFor('4.0.1').name, '3.5');
    assert.equal(dialectFor('3.4.23').name, '3.4');
    assert.equal(dialectFor('3.10.0').name, '3.5');
    assert.equal(dialectFor(null).name, '3.4');
    assert.equal(dialectFor('garbage').name, '3.4');
  });

  it('writes error bodies as each version does', () => {
    const message = 'etcdserver: mvcc: required revision is a future revision';
    assert.equal(dialectFor('3.4.23').errorBody(status.OUT_OF_RANGE, message), `{"error":"${message}","message":"${message}","code":11}`);
    assert.equal(dialectFor('3.5.16').errorBody(status.OUT_OF_RANGE, message), `{"code":11,"message":"${message}"}`);
    assert.equal(dialectFor('3.5.16').errorBody(status.UNKNOWN, ''), '{"code":2}');
  });

  it("maps FailedPrecondition to 412 on 3.4 and 400 on 3.5; the rest alike", () => {
    assert.equal(dialectFor('3.4.23').httpStatus(status.FAILED_PRECONDITION), 412);
    assert.equal(dialectFor('3.5.16').httpStatus(status.FAILED_PRECONDITION), 400);
    for (const code of [status.NOT_FOUND, status.OUT_OF_RANGE, status.UNAVAILABLE, status.PERMISSION_DENIED]) {
      assert.equal(dialectFor('3.5.16').httpStatus(code), dialectFor('3.4.23').httpStatus(code));
    }
  });

  it('forwards trailers on 3.5 only to a client that takes them', () => {
    assert.equal(dialectFor('3.4.23').forwardsTrailers({}), true);
    assert.equal(dialectFor('3.5.16').forwardsTrailers({}), false);
    assert.equal(dialectFor('3.5.16').forwardsTrailers({ te: 'gzip, Trailers' }), true);
  });

  it('refuses a token gRPC metadata cannot carry as each version does', () => {
    assert.equal(dialectFor('3.4.23').unprintableToken, 'invalidAuthToken');
    assert.equal(dialectFor('3.5.16').unprintableToken, 'authorizationNotPrintable');
  });

  it('answers routing errors and /health as each version does', () => {
    assert.deepEqual(dialectFor('3.5.16').routingError('method'), { status: 501, contentType: 'application/json', body: '{"code":12,"message":"Method Not Allowed"}', noSniff: false });
    assert.equal(dialectFor('3.4.23').routingError('method').status, 405);
    assert.equal(dialectFor('3.5.16').routingError('not-found').body, '{"code":5,"message":"Not Found"}');
    assert.equal(dialectFor('3.4.23').healthBody(true, undefined), '{"health":"true"}');
    assert.equal(dialectFor('3.5.16').healthBody(true, undefined), '{"health":"true","reason":""}');
  });
});
