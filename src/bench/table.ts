/**
 * The report as a table: one row per scenario figure, one column per target,
 * each cell the median and, in parentheses, the ratio to direct (or, with
 * `ratioTo: 'reference'`, to the reference target).
 */
import type { BenchReport, ResultRow } from './runner.js';

export function formatNumber(value: number, decimals: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

function cell(row: ResultRow | undefined, decimals: number, which: 'ratio' | 'ratioToReference'): string {
  if (!row || row.median === null) return row?.skipped ? '—' : row?.errors ? 'failed' : '—';
  const value = formatNumber(row.median, decimals);
  const ratio = row[which];
  return ratio === null ? value : `${value} (${ratio.toFixed(2)})`;
}

interface Grid {
  readonly head: string[];
  readonly rows: string[][];
}

function grid(report: BenchReport, which: 'ratio' | 'ratioToReference'): Grid {
  const head = ['scenario', 'figure', ...report.targets.map((t) => t.label)];
  const rows: string[][] = [];
  for (const s of report.scenarios) {
    for (const m of s.metrics) {
      const label = s.metrics.length > 1 || m.label !== 'rate' ? `${m.label}, ${m.unit}` : m.unit;
      rows.push([
        s.title,
        label,
        ...report.targets.map((t) =>
          cell(
            report.results.find((r) => r.scenario === s.name && r.target === t.name && r.metric === m.key),
            m.decimals,
            which,
          ),
        ),
      ]);
    }
  }
  return { head, rows };
}

/** The median of a per-unit CPU figure from the details of each round. */
function medianDetail(row: ResultRow | undefined, field: string): number | null {
  const values = (row?.details ?? []).map((d) => d[field]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  const mid = values.length >> 1;
  return values.length % 2 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
}

/**
 * The proxy's own CPU time (user + system) per unit of work, medians over
 * the rounds: µs per connection or request, ms per GB. Lower is better; the
 * figure the sharing of cores distorts least.
 */
function cpuGrid(report: BenchReport): Grid {
  const proxies = report.targets.filter((t) => t.name !== report.options.baseline);
  const head = ['scenario', 'proxy CPU', ...proxies.map((t) => t.label)];
  const rows: string[][] = [];
  for (const s of report.scenarios) {
    const m = s.metrics[0]!;
    const field = s.name.startsWith('bulk') ? 'proxyCpuMsPerGB' : 'proxyCpuUsPerOp';
    const unit = s.name.startsWith('bulk') ? 'ms per GB' : s.name === 'latency' ? 'µs per request' : s.name === 'mixed' ? 'µs per session' : 'µs per connection';
    const cells = proxies.map((t) => medianDetail(report.results.find((r) => r.scenario === s.name && r.target === t.name && r.metric === m.key), field));
    if (cells.every((c) => c === null)) continue;
    rows.push([s.title, unit, ...cells.map((c) => (c === null ? '—' : formatNumber(c, c < 100 ? 1 : 0)))]);
  }
  return { head, rows };
}

function renderText({ head, rows }: Grid): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

function renderMarkdown({ head, rows }: Grid): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = [`| ${head.map(esc).join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) out.push(`| ${r.map(esc).join(' | ')} |`);
  return out.join('\n') + '\n';
}

/** The proxy CPU table, as text or markdown; empty when no proxy CPU was measured. */
export function cpuTable(report: BenchReport, format: 'text' | 'markdown'): string {
  const g = cpuGrid(report);
  if (g.rows.length === 0) return '';
  return format === 'text' ? renderText(g) : renderMarkdown(g);
}

/** Plain text, aligned, for the terminal. */
export function textTable(report: BenchReport): string {
  return (
    renderText(grid(report, 'ratio')) +
    `\n(ratio) = performance relative to ${report.options.baseline}: >1 better, <1 worse (for latency and memory: ${report.options.baseline}/value).\n`
  );
}

/** GitHub markdown. */
export function markdownTable(report: BenchReport, which: 'ratio' | 'ratioToReference' = 'ratio'): string {
  return renderMarkdown(grid(report, which));
}
