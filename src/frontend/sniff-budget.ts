/** A connection that can be made to decide now, with what it has received. */
export interface Sniffing {
  decideNow(): void;
}

/**
 * The budget for connections that are still sniffing (global.sniffBudget):
 * a flood of silent or slow clients holds at most `perSource` of them per
 * client address, and `total` in all. Past `total`, the oldest is made to
 * decide now — it is then routed as if its inspect delay had expired (a
 * silent one to its `none` route), so new clients are never the ones starved.
 */
export class SniffBudget {
  /** Insertion order is age order: the first is the oldest. */
  private readonly sniffing = new Map<Sniffing, string>();
  private readonly perSource = new Map<string, number>();

  constructor(private limits: { readonly total: number; readonly perSource: number }) {}

  setLimits(limits: { readonly total: number; readonly perSource: number }): void {
    this.limits = limits;
  }

  get size(): number {
    return this.sniffing.size;
  }

  /** False when this source already has its share sniffing: the new connection should be refused. */
  admit(source: string): boolean {
    return (this.perSource.get(source) ?? 0) < this.limits.perSource;
  }

  enter(connection: Sniffing, source: string): void {
    this.sniffing.set(connection, source);
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    while (this.sniffing.size > this.limits.total) {
      const oldest = this.sniffing.keys().next().value!;
      this.leave(oldest);
      oldest.decideNow();
    }
  }

  /** Idempotent: a connection leaves when it is decided or gone. */
  leave(connection: Sniffing): void {
    const source = this.sniffing.get(connection);
    if (source === undefined) return;
    this.sniffing.delete(connection);
    const left = this.perSource.get(source)! - 1;
    if (left === 0) this.perSource.delete(source);
    else this.perSource.set(source, left);
  }
}
