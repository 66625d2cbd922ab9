/**
 * Whether etcd still holds its history from a revision on, asked of etcd
 * when a read or a watch reaches into the past: a compaction made elsewhere
 * (another proxy, a client of etcd, etcd's auto-compaction) reaches no watch
 * the proxy holds, so nothing but asking tells it. A request may only trust a
 * question asked after it arrived (a compaction may have finished just
 * before); every request handled in one turn of the event loop arrived before
 * that turn's end, so those share one question, about the lowest revision
 * among them, asked then.
 */
export class CompactionCheck {
  private pending: { lowest: number; answer: Promise<boolean | undefined> } | null = null;

  constructor(
    /** etcd's answer for one revision: true compacted, false held, undefined when no member answered. */
    private readonly isCompacted: (revision: number) => Promise<boolean | undefined>,
    /** Told when etcd has compacted past a revision the proxy's log still holds. */
    private readonly onCompacted: () => void = () => undefined,
  ) {}

  /**
   * False when etcd holds every revision from `revision` on; true when it may
   * not (the request is etcd's to answer); undefined when etcd did not answer.
   */
  mayBeCompacted(revision: number): Promise<boolean | undefined> {
    let pending = this.pending;
    if (pending === null) {
      let ask: (lowest: number) => void = () => undefined;
      const answer = new Promise<number>((resolve) => {
        ask = resolve;
      })
        .then((lowest) => this.isCompacted(lowest))
        .catch(() => undefined);
      pending = { lowest: revision, answer };
      this.pending = pending;
      const asked = pending;
      setImmediate(() => {
        this.pending = null;
        ask(asked.lowest);
      });
      void answer.then((compacted) => {
        if (compacted === true) this.onCompacted();
      });
    } else {
      pending.lowest = Math.min(pending.lowest, revision);
    }
    // Held from the lowest revision asked about means held from every later one; compacted there
    // says nothing certain about the others, which then go to etcd, whose answer is right either way.
    return pending.answer;
  }
}
