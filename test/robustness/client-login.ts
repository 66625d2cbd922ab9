import { Metadata, status } from '@grpc/grpc-js';
import { authClient } from '../support/etcd-auth';
import { call } from '../support/raw-client';

/**
 * A client's login when etcd has auth on: logs in through the address it
 * talks to (a proxy forwards the login, and learns the token), sends the
 * token with each request, and logs in again when etcd no longer takes it
 * (a restarted etcd forgets its simple tokens).
 */
export class ClientLogin {
  private token: string | null = null;

  constructor(
    readonly user: string,
    private readonly password: string,
  ) {}

  metadata(): Metadata {
    const metadata = new Metadata();
    if (this.token !== null) metadata.set('token', this.token);
    return metadata;
  }

  headers(): Record<string, string> {
    return this.token === null ? {} : { token: this.token };
  }

  /** Logs in at `address` unless a token is held; false when the login failed (try later). */
  async ensure(address: string): Promise<boolean> {
    if (this.token !== null) return true;
    const client = authClient(address);
    try {
      const outcome = await call<{ token?: string }>(client, 'Authenticate', { name: this.user, password: this.password }, { deadlineMs: 5_000 });
      if (outcome.error !== null || outcome.response?.token === undefined) return false;
      this.token = outcome.response.token;
      return true;
    } finally {
      client.close();
    }
  }

  /** A failed request: a token etcd no longer takes is dropped, and the next request logs in again. */
  failed(code: number, message: string): void {
    if (code === status.UNAUTHENTICATED || /auth token|user name is empty|revision of auth store is old/.test(message)) this.token = null;
  }
}
