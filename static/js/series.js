// The series page: a live chart of the recent points (value, SMA, EWMA, the detector's band and
// expectation, anomalies) and, on request, the history of closed windows from the store.

import { arrow, number, signed } from "./format.js";

/** The series this page shows, and its chart. */
export const shown = { stream: "", series: "", data: null, minutes: 60, chart: null };

function visible(data) {
  const cutoff = Date.now() / 1000 - shown.minutes * 60;
  const first = data[0].findIndex((t) => t >= cutoff);
  return first <= 0 ? data : data.map((column) => column.slice(first));
}

const LIVE_SERIES = [
  {},
  { label: "value", stroke: "#1d2330", width: 1 },
  { label: "SMA", stroke: "#2563eb", width: 1.5 },
  { label: "EWMA", stroke: "#16a34a", width: 1.5 },
  { label: "band low", stroke: "rgba(37,99,235,0.35)", width: 1, dash: [4, 4] },
  { label: "band high", stroke: "rgba(37,99,235,0.35)", width: 1, dash: [4, 4] },
  { label: "anomaly", stroke: "#c62828", width: 0, paths: () => null, points: { show: true, size: 9, fill: "#c62828" } },
  { label: "expected", stroke: "rgba(124,58,237,0.7)", width: 1, dash: [2, 3] },
];

export function setupChart() {
  const source = document.getElementById("chart-data");
  const target = document.getElementById("chart");
  if (!source || !target || typeof uPlot === "undefined") return;
  const initial = JSON.parse(source.textContent);
  Object.assign(shown, { data: initial.data, stream: initial.stream, series: initial.series });
  shown.chart = new uPlot({
    width: target.clientWidth || 1000,
    height: 360,
    scales: { x: { time: true } },
    series: LIVE_SERIES,
    bands: [{ series: [5, 4], fill: "rgba(37,99,235,0.08)" }],
  }, visible(shown.data), target);
  window.addEventListener("resize", () => shown.chart.setSize({ width: target.clientWidth, height: 360 }));
  for (const button of document.querySelectorAll("button.range")) {
    button.addEventListener("click", () => chooseRange(button, target));
  }
}

/** A range button: minutes of the live view, or hours of history. */
function chooseRange(button, target) {
  for (const other of document.querySelectorAll("button.range")) {
    other.setAttribute("aria-pressed", String(other === button));
  }
  if (button.dataset.hours) return showHistory(Number(button.dataset.hours));
  shown.minutes = Number(button.dataset.minutes);
  document.getElementById("history").hidden = true;
  document.getElementById("history-note").textContent = "";
  target.hidden = false;
  shown.chart.setData(visible(shown.data));
}

// History beyond the live view: the series' closed windows from the store (mean, min–max band).
let historyChart = null;
async function showHistory(hours) {
  const note = document.getElementById("history-note");
  const live = document.getElementById("chart");
  const target = document.getElementById("history");
  const to = Date.now(), from = to - hours * 3600 * 1000;
  const url = `/api/series/${encodeURIComponent(shown.stream)}/${encodeURIComponent(shown.series)}?from=${from}&to=${to}`;
  note.textContent = "loading…";
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    note.textContent = body.error ?? `error ${response.status}`;
    return;
  }
  // One window kind: the finest there is (tumbling, else sliding, else session).
  const kind = ["tumbling", "sliding", "session"].find((k) => body.windows.some((w) => w.kind === k));
  const windows = body.windows.filter((w) => w.kind === kind);
  note.textContent = windows.length ? `${windows.length} ${kind} windows from the store` : "no closed windows in this range";
  const data = [
    windows.map((w) => w.window_start / 1000),
    windows.map((w) => w.mean),
    windows.map((w) => w.min),
    windows.map((w) => w.max),
  ];
  live.hidden = true;
  target.hidden = false;
  if (historyChart) return historyChart.setData(data);
  historyChart = new uPlot({
    width: live.clientWidth || target.clientWidth || 1000,
    height: 360,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "mean", stroke: "#1d2330", width: 1.5 },
      { label: "min", stroke: "rgba(37,99,235,0.45)", width: 1 },
      { label: "max", stroke: "rgba(37,99,235,0.45)", width: 1 },
    ],
    bands: [{ series: [3, 2], fill: "rgba(37,99,235,0.08)" }],
  }, data, target);
}

/** A new point of the series: onto the chart and into the figures above it. */
export function applySeriesPoint(point) {
  if (!shown.chart || point.stream !== shown.stream || point.series !== shown.series) return;
  // The band the detector used at this point (null where it had none: still learning, or no
  // single value could have been anomalous there).
  const row = [point.ts / 1000, point.value, point.sma, point.ewma, point.lower, point.upper, point.anomaly ? point.value : null, point.expected];
  shown.data.forEach((column, i) => {
    column.push(row[i]);
    if (column.length > 3600) column.shift();
  });
  shown.chart.setData(visible(shown.data));
  document.getElementById("series-value").textContent = number(point.value);
  document.getElementById("series-sma").textContent = number(point.sma);
  document.getElementById("series-ewma").textContent = number(point.ewma);
  document.getElementById("series-trend").textContent = `${arrow[point.trend]} ${point.trend}`;
  document.getElementById("series-z").textContent = signed(point.z);
  const status = document.getElementById("series-status");
  status.className = `status ${point.anomaly ? "anomalous" : "normal"}`;
  status.textContent = point.anomaly ? "anomalous" : "normal";
}
