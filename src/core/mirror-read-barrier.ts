import { isAuthRefusal } from '../auth/auth-gate';
import { READ_BARRIER_TIMEOUT_MS } from '../mirror/read-barrier';
import type { MirrorReadDeps } from './mirror-read-deps';
import { FORWARD, FRESH, type ReadRoutes, type Route } from './mirror-read-route';
import type { DecodedRead } from './request-memo';

/**
 * Linearizable reads: the mirror answers once it holds what the upstream
 * holds now (a shared read barrier); every read waiting on one barrier call
 * gets one route, worked out once (grayscale reads apart: theirs differs).
 */
export class BarrierRoutes<Req> {
  private readonly routesByBarrier = [new WeakMap<Promise<number>, Promise<Route>>(), new WeakMap<Promise<number>, Promise<Route>>()] as const;

  constructor(
    private readonly deps: MirrorReadDeps,
    private readonly routes: ReadRoutes<Req>,
  ) {}

  route(decoded: DecodedRead<Req>): Promise<Route> {
    const barrier = this.deps.barrier.upstreamRevision();
    const routes = this.routesByBarrier[this.routes.isGrayscale(decoded) ? 1 : 0];
    let route = routes.get(barrier);
    if (route === undefined) {
      route = this.after(barrier, decoded);
      routes.set(barrier, route);
    }
    return route;
  }

  private async after(barrier: Promise<number>, decoded: DecodedRead<Req>): Promise<Route> {
    let upstreamRevision: number;
    try {
      upstreamRevision = await barrier;
    } catch (error) {
      // Auth went on upstream: from now on etcd decides, with the client's own token.
      if (isAuthRefusal(error)) {
        this.deps.auth.refused();
        return FORWARD;
      }
      // The upstream cannot confirm freshness right now: what the mirror holds is the best answer.
      return this.routes.stale();
    }
    // etcd's current revision: the floor's too, once it is known (a process that just started does not know its own).
    this.deps.floor.noteUpstream(upstreamRevision);
    const reached = await this.deps.mirror.waitForRevision(upstreamRevision, READ_BARRIER_TIMEOUT_MS);
    return reached ? FRESH : this.routes.upstream(decoded, true);
  }
}
