// Sparklines, drawn as the server draws them (format.rs `spark_scale`, `sparkline`): into a
// 120×28 box fitted to the points.

export function sparkScale(points) {
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const values = points.map((p) => p[1]);
  const lo = Math.min(...values), hi = Math.max(...values);
  const spanT = Math.max(t1 - t0, 1), spanV = hi > lo ? hi - lo : 1;
  return (t, v) => [((t - t0) / spanT) * 120, 27 - ((v - lo) / spanV) * 26];
}

/** SVG polyline points for `[[ts, value], ...]`; empty for fewer than two. */
export function sparkline(points) {
  if (points.length < 2) return "";
  const scale = sparkScale(points);
  return points.map(([t, v]) => scale(t, v).map((c) => c.toFixed(1)).join(",")).join(" ");
}

const SVG = "http://www.w3.org/2000/svg";

/** The series around an alert (5 min before, 2 after) with its point marked, or null. */
export function alertSpark(points, alert) {
  const around = points.filter(([t]) => t >= alert.ts - 300000 && t <= alert.ts + 120000 && t !== alert.ts);
  around.push([alert.ts, alert.value]);
  around.sort((a, b) => a[0] - b[0]);
  if (around.length < 2) return null;
  const svg = document.createElementNS(SVG, "svg");
  for (const [name, value] of [["class", "spark alert-spark"], ["viewBox", "0 0 120 28"], ["width", "120"], ["height", "28"], ["aria-label", "the series around the alert"]]) {
    svg.setAttribute(name, value);
  }
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", sparkline(around));
  const [x, y] = sparkScale(around)(alert.ts, alert.value);
  const dot = document.createElementNS(SVG, "circle");
  dot.setAttribute("cx", x.toFixed(1));
  dot.setAttribute("cy", y.toFixed(1));
  dot.setAttribute("r", "3");
  svg.append(line, dot);
  return svg;
}

/** The recent values of every series this page has heard of: "stream/series" -> [[ts, value]]. */
export const recent = new Map();

/** Keeps a point among its series' recent values (at most 120). */
export function remember(point) {
  const name = `${point.stream}/${point.series}`;
  const points = recent.get(name) ?? [];
  points.push([point.ts, point.value]);
  while (points.length > 120) points.shift();
  recent.set(name, points);
  return points;
}
