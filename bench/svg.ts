/**
 * A self-contained SVG of a bench report: a grouped bar chart of each
 * figure's ratio to the direct connection (performance: 1 = as fast as
 * direct), one bar per proxy, and a second panel with memory per idle
 * spliced connection in KiB.
 */
import type { BenchReport } from '../src/bench/runner.js';

const COLORS = ['#d1495b', '#00798c', '#edae49', '#66a182', '#2e4057', '#8d96a3', '#9b5de5', '#f15bb5'];

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Short labels for the x axis. */
const SHORT: Record<string, string> = {
  'bulk-c2s-1/gbits': 'bulk 1× c→s',
  'bulk-c2s-4/gbits': 'bulk 4× c→s',
  'bulk-s2c-1/gbits': 'bulk 1× s→c',
  'bulk-s2c-4/gbits': 'bulk 4× s→c',
  'conn-http/rate': 'conn/s HTTP',
  'conn-tls/rate': 'conn/s TLS',
  'conn-raw/rate': 'conn/s raw',
  'conn-policy/rate': 'conn/s policy',
  'latency/rate': 'keep-alive req/s',
  'latency/p50': 'latency p50',
  'latency/p99': 'latency p99',
  'mixed/rate': 'mixed sessions/s',
};

export function chartSvg(report: BenchReport): string {
  const proxies = report.targets.filter((t) => t.name !== report.options.baseline);
  const groups: { key: string; label: string }[] = [];
  for (const s of report.scenarios) {
    for (const m of s.metrics) {
      if (s.name === 'memory') continue;
      groups.push({ key: `${s.name}/${m.key}`, label: SHORT[`${s.name}/${m.key}`] ?? `${s.name} ${m.label}` });
    }
  }
  const ratio = (key: string, target: string): number | null => {
    const [scenario, metric] = key.split('/');
    return report.results.find((r) => r.scenario === scenario && r.metric === metric && r.target === target)?.ratio ?? null;
  };
  const maxRatio = Math.max(1.2, ...groups.flatMap((g) => proxies.map((p) => ratio(g.key, p.name) ?? 0)));
  const top = Math.ceil(maxRatio * 5) / 5;

  const barW = 9;
  const groupW = proxies.length * barW + 14;
  const left = 56;
  const chartH = 260;
  const width = Math.max(640, left + groups.length * groupW + 20);
  const y0 = 70;
  const yOf = (v: number) => y0 + chartH - (v / top) * chartH;
  const parts: string[] = [];
  const m = report.machine;
  parts.push(
    `<text x="${left}" y="24" font-size="15" font-weight="bold">Performance relative to a direct connection (1.0 = direct; higher is better)</text>`,
    `<text x="${left}" y="42" font-size="11" fill="#555">${esc(`${m.date.slice(0, 10)} · node ${m.node} · ${m.cpu} × ${m.cores} cores (shared by load generator, backend and proxy) · ${m.kernel}`)}</text>`,
    `<text x="${left}" y="57" font-size="11" fill="#555">${esc(`medians of ${report.options.repeat} interleaved rounds, ${report.options.durationMs} ms each; latency bars are direct ÷ proxy`)}</text>`,
  );
  for (let v = 0; v <= top + 1e-9; v += 0.2) {
    const y = yOf(v).toFixed(1);
    const strong = Math.abs(v - 1) < 1e-9;
    parts.push(
      `<line x1="${left}" x2="${width - 10}" y1="${y}" y2="${y}" stroke="${strong ? '#333' : '#ddd'}" stroke-width="${strong ? 1.2 : 1}"${strong ? ' stroke-dasharray="4 3"' : ''}/>`,
      `<text x="${left - 6}" y="${(Number(y) + 4).toFixed(1)}" font-size="10" text-anchor="end">${v.toFixed(1)}</text>`,
    );
  }
  groups.forEach((g, gi) => {
    const gx = left + 8 + gi * groupW;
    proxies.forEach((p, pi) => {
      const r = ratio(g.key, p.name);
      if (r === null) return;
      const y = yOf(r);
      parts.push(
        `<rect x="${gx + pi * barW}" y="${y.toFixed(1)}" width="${barW - 1}" height="${(y0 + chartH - y).toFixed(1)}" fill="${COLORS[pi % COLORS.length]}"><title>${esc(`${p.label} · ${g.label}: ${r.toFixed(2)}`)}</title></rect>`,
      );
    });
    const lx = gx + (proxies.length * barW) / 2;
    parts.push(`<text x="${lx}" y="${y0 + chartH + 12}" font-size="10" text-anchor="end" transform="rotate(-35 ${lx} ${y0 + chartH + 12})">${esc(g.label)}</text>`);
  });

  // Legend.
  let legendY = y0 + chartH + 90;
  proxies.forEach((p, pi) => {
    const x = left + (pi % 4) * 170;
    const y = legendY + Math.floor(pi / 4) * 16;
    parts.push(`<rect x="${x}" y="${y - 9}" width="10" height="10" fill="${COLORS[pi % COLORS.length]}"/>`, `<text x="${x + 14}" y="${y}" font-size="11">${esc(p.label)}</text>`);
  });
  legendY += Math.ceil(proxies.length / 4) * 16 + 20;

  // Memory panel.
  const memory = report.results.filter((r) => r.scenario === 'memory' && r.median !== null);
  let height = legendY;
  if (memory.length > 0) {
    const held = report.options.hold;
    parts.push(`<text x="${left}" y="${legendY}" font-size="13" font-weight="bold">${esc(`Memory per idle spliced connection, KiB (proxy RSS delta ÷ ${held} held; lower is better)`)}</text>`);
    const maxKib = Math.max(...memory.map((r) => r.median!));
    const rowH = 18;
    memory.forEach((r, i) => {
      const t = proxies.findIndex((p) => p.name === r.target);
      const label = report.targets.find((x) => x.name === r.target)?.label ?? r.target;
      const y = legendY + 14 + i * rowH;
      const w = (r.median! / maxKib) * (width - left - 200);
      parts.push(
        `<text x="${left + 110}" y="${y + 12}" font-size="11" text-anchor="end">${esc(label)}</text>`,
        `<rect x="${left + 116}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 5}" fill="${COLORS[(t < 0 ? 0 : t) % COLORS.length]}"/>`,
        `<text x="${(left + 120 + w).toFixed(1)}" y="${y + 12}" font-size="11">${r.median!.toFixed(1)}</text>`,
      );
    });
    height = legendY + 14 + memory.length * rowH + 16;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
${parts.join('\n')}
</svg>
`;
}
