export interface BarGroup {
  title: string;
  bars: { label: string; value: number; highlight?: boolean }[];
}

const xmlText = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

const round = (value: number) =>
  value >= 100 ? Math.round(value).toString() : value.toFixed(value >= 10 ? 1 : 2);

/**
 * Horizontal bars, one panel per group, each panel on its own linear scale (a 40 ms link and
 * loopback differ by more than the bars inside either), values written next to the bars.
 */
export function barChart(title: string, unit: string, groups: BarGroup[]): string {
  const width = 640;
  const labelWidth = 150;
  const valueWidth = 90;
  const barHeight = 22;
  const gap = 6;
  const groupGap = 34;
  const top = 46;
  const plot = width - labelWidth - valueWidth - 20;
  const out: string[] = [];
  let y = top;
  for (const group of groups) {
    const max = Math.max(...group.bars.map((b) => b.value));
    out.push(`<text x="10" y="${y - 8}" font-weight="bold">${xmlText(group.title)}</text>`);
    for (const bar of group.bars) {
      const w = Math.max(1, (bar.value / max) * plot);
      const fill = bar.highlight ? "#2a7d4f" : "#8a8f98";
      out.push(
        `<text x="${labelWidth - 8}" y="${y + barHeight * 0.7}" text-anchor="end">${xmlText(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${fill}"/>`,
        `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + barHeight * 0.7}">${round(bar.value)} ${xmlText(unit)}</text>`,
      );
      y += barHeight + gap;
    }
    y += groupGap;
  }
  const height = y - groupGap + 12;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13" role="img">`,
    // Screen readers and image viewers name the chart by its title.
    `<title>${xmlText(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${xmlText(title)}</text>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}
