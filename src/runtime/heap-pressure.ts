/**
 * When the JavaScript heap is too full to take new connections. Refusing
 * them sheds a flood instead of letting V8 abort the process on heap
 * exhaustion (Instance.memoryTight reads the heap and refuses).
 *
 * Heap use counts garbage not yet collected, which an idle process may keep
 * for long, so the state has hysteresis: tight once the heap is over the mark
 * with at least TIGHT_FLOOR connections open; at ease again once the heap is
 * below the mark or a tenth of the connections open when it became tight
 * have closed (a collection follows the allocations of new ones). Eased that
 * way with the heap still over the mark, it is tight again only once
 * TIGHT_FLOOR more connections are open than the fewest since (whatever the
 * heap read in between), so a draining flood does not flap it and refuse the
 * few clients arriving meanwhile.
 *
 * With fewer than TIGHT_FLOOR connections open it is never tight: so few
 * cannot hold that much, the heap is garbage V8 will collect before it runs
 * short, and refusing would leave a quiet process refusing everyone after a
 * flood until its next collection (CI saw exactly that).
 */

/**
 * Share of V8's old-generation limit past which new connections are refused.
 * Half: the other half is headroom for the connections already open, which
 * still allocate (thousands closing at once need some).
 */
export const HEAP_TIGHT = 0.5;
/** Below this many open connections the heap is never called tight. */
export const TIGHT_FLOOR = 256;

export class HeapPressure {
  /** While tight: the connections open when it became so; else null. */
  private tightAt: number | null = null;
  /** After easing with the heap still over the mark: the fewest connections open since. */
  private easedLow: number | null = null;

  get tight(): boolean {
    return this.tightAt !== null;
  }

  /** One reading; says whether it made the state change. */
  update(heapUsed: number, heapLimit: number, active: number): 'tight' | 'eased' | null {
    const over = heapUsed > HEAP_TIGHT * heapLimit && active >= TIGHT_FLOOR;
    if (this.tightAt !== null) {
      if (over && active >= this.tightAt * 0.9) return null;
      this.tightAt = null;
      this.easedLow = over ? active : null;
      return 'eased';
    }
    // The fewest since easing counts every reading: a collection in the middle of a drain takes the heap below the mark for a moment, and the garbage of the connections still closing takes it over again.
    if (this.easedLow !== null) this.easedLow = Math.min(this.easedLow, active);
    if (!over) return null;
    if (this.easedLow !== null && active < this.easedLow + TIGHT_FLOOR) return null;
    this.tightAt = active;
    this.easedLow = null;
    return 'tight';
  }
}

/**
 * The size V8 lets the old generation reach before it aborts the process:
 * --max-old-space-size when given (node flags or NODE_OPTIONS), else
 * heap_size_limit less a generous allowance for the young generation.
 */
export function oldGenerationLimit(heapSizeLimit: number): number {
  const flags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
  const set = /--max[-_]old[-_]space[-_]size[= ](\d+)/.exec(flags);
  if (set) return Number(set[1]) * 1048576;
  return heapSizeLimit > 256 * 1048576 ? heapSizeLimit - 64 * 1048576 : heapSizeLimit / 2;
}
