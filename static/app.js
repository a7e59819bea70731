// Tidewatch dashboard script: progressive enhancement over server-rendered pages. The pages are
// complete without it; with it they update live over /ws (protocol v1, see src/web/ws.rs).
"use strict";

const page = document.body.dataset.page;
const baseTitle = document.title;
const recent = new Map(); // "stream/series" -> [[ts, value], ...]

const fmt = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(3));
const arrow = { rising: "↗", falling: "↘", flat: "→" };

let openAlerts = Number(document.querySelector('nav a[href="/alerts"] .badge')?.textContent ?? 0);
const openIds = new Set(); // open alerts this page has heard of
function setOpenAlerts(count) {
  openAlerts = count;
  document.title = count > 0 ? `(${count}) ${baseTitle}` : baseTitle;
  const link = document.querySelector('nav a[href="/alerts"]');
  let badge = link.querySelector(".badge");
  if (count > 0 && !badge) {
    badge = document.createElement("span");
    badge.className = "badge";
    link.append(" ", badge);
  }
  if (badge) {
    badge.textContent = count;
    badge.hidden = count === 0;
  }
}

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = false;
  box.onclick = () => (page === "alerts" ? (box.hidden = true) : (location.href = "/alerts"));
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), 8000);
}

// ---- pipeline progress (overview header, status page) ----
const dash = "–";
const time = (ms) => (ms == null ? dash : new Date(ms).toISOString());
const count = (n) => (n == null ? dash : String(n));
// As the server renders it (pages.rs `seconds`): 12.5 s, 4 min 10 s, 3 h 5 min, 2 d 4 h.
function span(ms) {
  const sign = ms < 0 ? "-" : "", s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return `${sign}${(Math.abs(ms) / 1000).toFixed(1)} s`;
  if (s < 3600) return `${sign}${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${sign}${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function setField(scope, field, text) {
  const cell = scope.querySelector(`[data-field="${field}"]`);
  if (cell && cell.textContent !== text) cell.textContent = text;
}

function applyStreams(streams) {
  const now = Date.now();
  for (const s of streams) {
    const lags = s.partitions.map((p) => p.lag).filter((l) => l != null);
    const fields = {
      messages: count(s.messages), accepted: count(s.accepted), late: count(s.late),
      duplicates: count(s.duplicates), dead_letters: count(s.dead_letters),
      watermark: time(s.watermark),
      behind: s.watermark == null ? dash : span(now - s.watermark),
      lag: lags.length ? String(lags.reduce((a, b) => a + b, 0)) : dash,
      source: s.source_error ? `down: ${s.source_error}` : s.source_state || "reading",
    };
    for (const scope of document.querySelectorAll(`[data-stream="${CSS.escape(s.name)}"]`)) {
      for (const [field, text] of Object.entries(fields)) setField(scope, field, text);
      const source = scope.querySelector('[data-field="source"]');
      if (source) source.className = `source ${s.source_error ? "down" : "ok"}`;
    }
    if (page === "status" && partitionsChanged(s)) {
      // A consumer group moved partitions (or the first ones arrived): the server draws
      // the table, so fetch the page again rather than patch rows in.
      location.reload();
      return;
    }
    for (const p of s.partitions) {
      const row = document.querySelector(`tr[data-partition="${CSS.escape(`${s.name}/${p.split}`)}"]`);
      if (!row) continue;
      setField(row, "next_offset", count(p.next_offset));
      setField(row, "lag", count(p.lag));
      setField(row, "watermark", time(p.watermark));
      const state = p.idle ? "idle" : p.watermark == null ? "waiting" : "active";
      const badge = row.querySelector('[data-field="state"]');
      badge.className = `state ${state}`;
      badge.textContent = state;
    }
  }
}

// Whether the status page's rows for stream `s` are other partitions than it now reports.
function partitionsChanged(s) {
  const table = [...document.querySelectorAll("table[data-partitions-of]")].find(
    (t) => t.dataset.partitionsOf === s.name);
  if (!table) return true;
  const shown = [...table.querySelectorAll("tr[data-partition]")]
    .map((row) => row.dataset.partition)
    .sort();
  const reported = s.partitions.map((p) => `${s.name}/${p.split}`).sort();
  return shown.join("\n") !== reported.join("\n");
}

// A failing sink pauses the pipeline (nothing is dropped); say so on every page.
function showPaused(reason) {
  document.querySelectorAll(".paused.server").forEach((p) => p.remove());
  const banner = document.getElementById("paused");
  banner.hidden = !reason;
  banner.textContent = reason ? `Pipeline paused: ${reason}` : "";
}

// ---- overview ----
// As the server draws it (pages.rs `spark_scale`): into a 120×28 box fitted to the points.
function sparkScale(points) {
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const values = points.map((p) => p[1]);
  const lo = Math.min(...values), hi = Math.max(...values);
  const spanT = Math.max(t1 - t0, 1), spanV = hi > lo ? hi - lo : 1;
  return (t, v) => [(t - t0) / spanT * 120, 27 - (v - lo) / spanV * 26];
}

// The series around an alert (5 min before, 2 after) with its point marked, from what this
// page has seen; the point itself comes with the alert.
function alertSpark(alert) {
  const around = (recent.get(`${alert.stream}/${alert.series}`) ?? [])
    .filter(([t]) => t >= alert.ts - 300000 && t <= alert.ts + 120000 && t !== alert.ts);
  around.push([alert.ts, alert.value]);
  around.sort((a, b) => a[0] - b[0]);
  if (around.length < 2) return "";
  const [x, y] = sparkScale(around)(alert.ts, alert.value);
  return `<svg class="spark alert-spark" viewBox="0 0 120 28" width="120" height="28" aria-label="the series around the alert"><polyline points="${sparkline(around)}"/><circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3"/></svg>`;
}

function sparkline(points) {
  if (points.length < 2) return "";
  const scale = sparkScale(points);
  return points.map(([t, v]) => scale(t, v).map((c) => c.toFixed(1)).join(",")).join(" ");
}

function seriesRow(point) {
  const name = `${point.stream}/${point.series}`;
  let row = document.querySelector(`#series tr[data-name="${CSS.escape(name)}"]`);
  if (!row) {
    const body = document.querySelector("#series tbody");
    body.querySelector("td.empty")?.closest("tr").remove();
    row = document.createElement("tr");
    row.dataset.name = name;
    row.innerHTML = '<td><span class="stream"></span> <span class="name"></span></td><td class="value"></td><td class="sma"></td><td class="ewma"></td><td class="trend"></td><td class="z"></td><td><span class="status"></span></td><td><svg class="spark" viewBox="0 0 120 28" width="120" height="28" aria-hidden="true"><polyline/></svg></td>';
    row.querySelector(".stream").textContent = point.stream;
    row.querySelector(".name").textContent = point.series;
    body.append(row);
  }
  return row;
}

// Keeps the recent values of every series (sparklines, the charts of new alerts).
function remember(point) {
  const name = `${point.stream}/${point.series}`;
  const points = recent.get(name) ?? [];
  points.push([point.ts, point.value]);
  while (points.length > 120) points.shift();
  recent.set(name, points);
  return points;
}

function applyPoint(point, fromSnapshot = false) {
  const row = seriesRow(point);
  const name = row.dataset.name;
  const points = fromSnapshot ? recent.get(name) ?? [] : remember(point);
  row.querySelector(".value").textContent = fmt(point.value);
  row.querySelector(".sma").textContent = fmt(point.sma);
  row.querySelector(".ewma").textContent = fmt(point.ewma);
  const slope = point.slope == null ? "–" : `${point.slope >= 0 ? "+" : ""}${point.slope.toFixed(4)}/s`;
  row.querySelector(".trend").innerHTML = "";
  row.querySelector(".trend").append(`${arrow[point.trend]} `, Object.assign(document.createElement("small"), { textContent: slope }));
  row.querySelector(".z").textContent = point.z == null ? "–" : `${point.z >= 0 ? "+" : ""}${point.z.toFixed(2)}`;
  const status = point.anomaly ? "anomalous" : "normal";
  row.className = status;
  const badge = row.querySelector(".status");
  badge.className = `status ${status}`;
  badge.textContent = status;
  row.querySelector("polyline").setAttribute("points", sparkline(points));
}

// ---- alerts ----
const verdictText = { real: "real", false_alarm: "false alarm" };

function alertCells(row, alert) {
  row.className = alert.state;
  row.querySelector(".state").textContent = alert.state;
  const acked = row.querySelector(".acked");
  acked.textContent = alert.acked_by ? `${alert.acked_by}, ${new Date(alert.acked_at).toISOString()}` : "";
  if (alert.verdict) {
    acked.append(" ", Object.assign(document.createElement("span"), { className: `verdict ${alert.verdict}`, textContent: verdictText[alert.verdict] }));
    row.querySelectorAll("button.judge").forEach((b) => b.remove());
  }
  if (alert.note) acked.append(document.createElement("br"), Object.assign(document.createElement("small"), { textContent: alert.note }));
  if (alert.state !== "open") {
    row.querySelector("button.ack")?.remove();
    row.querySelector("input.pick")?.remove();
    updateBulk();
  }
}

// What the detector saw: expected value, band, score and what fired.
function detectorCells(row, alert) {
  row.querySelector(".expected").textContent = fmt(alert.expected);
  row.querySelector(".band").textContent = alert.lower == null || alert.upper == null ? "unbounded" : `${fmt(alert.lower)} – ${fmt(alert.upper)}`;
  const p = alert.probability == null ? "" : `p ${alert.probability.toExponential(1)}`;
  row.querySelector(".score").textContent = alert.score == null ? p
    : alert.method === "threshold" ? `|z| ${alert.score.toFixed(1)}, ${p}` : `${alert.score.toFixed(1)} σ, ${p}`;
  const model = alert.expectation;
  const follows = !model || model === "flat" ? ""
    : { "1d": "daily pattern", "1w": "weekly pattern" }[model] ?? `${model} pattern`;
  row.querySelector(".why").textContent = follows ? `${alert.method}, ${follows}` : alert.method;
}

// Without a session where a token is needed, the server says 401: go and log in, then return.
function toLogin() {
  location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

// ---- bulk acknowledgement (alerts page) ----
const ackSelected = document.getElementById("ack-selected");
const picked = () => [...document.querySelectorAll("#alerts input.pick:checked")].map((box) => box.value);
function updateBulk() {
  if (!ackSelected) return;
  const n = picked().length;
  ackSelected.disabled = n === 0;
  ackSelected.textContent = n ? `Acknowledge ${n} selected` : "Acknowledge selected";
}
document.getElementById("alerts")?.addEventListener("change", (event) => {
  if (event.target.id === "pick-all") {
    for (const box of document.querySelectorAll("#alerts input.pick")) box.checked = event.target.checked;
  }
  updateBulk();
});
ackSelected?.addEventListener("click", async () => {
  const ids = picked();
  if (!ids.length) return;
  ackSelected.disabled = true;
  const response = await fetch("/api/alerts/ack", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ids, note: document.getElementById("bulk-note").value, verdict: document.getElementById("bulk-verdict").value || undefined }),
  });
  if (response.status === 401) return toLogin();
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    window.alert(`Could not acknowledge: ${body.error ?? response.status}`);
    updateBulk();
    return;
  }
  for (const alert of await response.json()) {
    const row = document.querySelector(`#alerts tr[data-id="${CSS.escape(alert.id)}"]`);
    if (row) alertCells(row, alert);
  }
  const all = document.getElementById("pick-all");
  if (all) all.checked = false;
  document.getElementById("bulk-note").value = "";
  updateBulk();
});

function applyAlert(alert, isNew) {
  if (page !== "alerts" && !(page === "series" && alert.series === chartState.series && alert.stream === chartState.stream)) {
    if (isNew && alert.state === "open") notice(`New alert: ${alert.stream}/${alert.series} (z ${alert.z.toFixed(1)})`);
    return;
  }
  let row = document.querySelector(`#alerts tr[data-id="${CSS.escape(alert.id)}"]`);
  if (!row) {
    if (alert.state !== "open") return;
    const body = document.querySelector("#alerts tbody");
    body.querySelector("td.empty")?.closest("tr").remove();
    row = document.createElement("tr");
    row.dataset.id = alert.id;
    const pick = document.getElementById("pick-all") ? '<input type="checkbox" class="pick" aria-label="Select">' : "";
    const actions = pick ? '<button class="ack">Acknowledge</button><button class="judge" data-verdict="real" title="Acknowledge: this was a real problem">Real</button><button class="judge" data-verdict="false_alarm" title="Acknowledge: nothing was wrong">False alarm</button>' : "";
    row.innerHTML = '<td>' + pick + '</td><td><span class="stream"></span> <span class="name"></span></td><td class="around"></td><td class="time"></td><td class="value"></td><td class="expected"></td><td class="band"></td><td class="zv"></td><td class="score"></td><td class="why"></td><td><span class="severity"></span></td><td class="state"></td><td class="acked"></td><td class="actions">' + actions + '</td>';
    row.querySelector(".stream").textContent = alert.stream;
    row.querySelector(".name").textContent = alert.series;
    row.querySelector(".around").innerHTML = alertSpark(alert); // numbers only: no user text
    row.querySelector(".time").textContent = new Date(alert.ts).toISOString();
    row.querySelector(".value").textContent = fmt(alert.value);
    detectorCells(row, alert);
    const z = row.querySelector(".zv");
    z.textContent = `${alert.z >= 0 ? "+" : ""}${alert.z.toFixed(2)}`;
    z.classList.add(alert.direction);
    const severity = row.querySelector(".severity");
    severity.textContent = alert.severity;
    severity.classList.add(alert.severity);
    row.querySelectorAll("button.ack, button.judge").forEach((button) => {
      button.dataset.id = alert.id;
      wireAck(button);
    });
    const box = row.querySelector("input.pick");
    if (box) box.value = alert.id;
    row.classList.add("fresh");
    body.prepend(row);
    notice(`New alert: ${alert.stream}/${alert.series}`);
  }
  detectorCells(row, alert);
  alertCells(row, alert);
}

// Acknowledge, or judge (acknowledge with a verdict): JSON POST (CSRF-safe); the broadcast then
// updates every open page, this one too.
function wireAck(button) {
  button.addEventListener("click", async () => {
    const verdict = button.dataset.verdict;
    const note = window.prompt(verdict ? `Note (optional), marking it ${verdictText[verdict]}:` : "Note (optional):", "");
    if (note === null) return;
    button.disabled = true;
    const response = await fetch(`/api/alerts/${encodeURIComponent(button.dataset.id)}/ack`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(verdict ? { note, verdict } : { note }),
    });
    if (response.status === 401) return toLogin();
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      window.alert(`Could not acknowledge: ${body.error ?? response.status}`);
      button.disabled = false;
      return;
    }
    alertCells(button.closest("tr"), await response.json());
  });
}
document.querySelectorAll("button.ack, button.judge").forEach(wireAck);

// ---- series page: a live chart ----
let chart = null;
const chartState = { data: null, minutes: 60, stream: "", series: "" };

function visible(data) {
  const cutoff = Date.now() / 1000 - chartState.minutes * 60;
  const first = data[0].findIndex((t) => t >= cutoff);
  return first <= 0 ? data : data.map((column) => column.slice(first));
}

function setupChart() {
  const source = document.getElementById("chart-data");
  const target = document.getElementById("chart");
  if (!source || !target || typeof uPlot === "undefined") return;
  const initial = JSON.parse(source.textContent);
  Object.assign(chartState, { data: initial.data, stream: initial.stream, series: initial.series });
  const options = {
    width: target.clientWidth || 1000,
    height: 360,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "value", stroke: "#1d2330", width: 1 },
      { label: "SMA", stroke: "#2563eb", width: 1.5 },
      { label: "EWMA", stroke: "#16a34a", width: 1.5 },
      { label: "band low", stroke: "rgba(37,99,235,0.35)", width: 1, dash: [4, 4] },
      { label: "band high", stroke: "rgba(37,99,235,0.35)", width: 1, dash: [4, 4] },
      { label: "anomaly", stroke: "#c62828", width: 0, paths: () => null, points: { show: true, size: 9, fill: "#c62828" } },
      { label: "expected", stroke: "rgba(124,58,237,0.7)", width: 1, dash: [2, 3] },
    ],
    bands: [{ series: [5, 4], fill: "rgba(37,99,235,0.08)" }],
  };
  chart = new uPlot(options, visible(chartState.data), target);
  window.addEventListener("resize", () => chart.setSize({ width: target.clientWidth, height: 360 }));
  for (const link of document.querySelectorAll("a.range")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      document.querySelectorAll("a.range").forEach((l) => l.classList.toggle("current", l === link));
      if (link.dataset.hours) return showHistory(Number(link.dataset.hours));
      chartState.minutes = Number(link.dataset.minutes);
      document.getElementById("history").hidden = true;
      document.getElementById("history-note").textContent = "";
      target.hidden = false;
      chart.setData(visible(chartState.data));
    });
  }
}

// History beyond the live view: the series' closed windows from the store (mean, min-max band).
let historyChart = null;
async function showHistory(hours) {
  const note = document.getElementById("history-note");
  const live = document.getElementById("chart");
  const target = document.getElementById("history");
  const to = Date.now(), from = to - hours * 3600 * 1000;
  const url = `/api/series/${encodeURIComponent(chartState.stream)}/${encodeURIComponent(chartState.series)}?from=${from}&to=${to}`;
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
  if (!historyChart) {
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
  } else {
    historyChart.setData(data);
  }
}

function applySeriesPoint(point) {
  if (!chart || point.stream !== chartState.stream || point.series !== chartState.series) return;
  // The band the detector used at this point (null where it had none: still learning, or no
  // single value could have been anomalous there).
  const row = [point.ts / 1000, point.value, point.sma, point.ewma, point.lower, point.upper, point.anomaly ? point.value : null, point.expected];
  chartState.data.forEach((column, i) => {
    column.push(row[i]);
    if (column.length > 3600) column.shift();
  });
  chart.setData(visible(chartState.data));
  document.getElementById("series-value").textContent = fmt(point.value);
  document.getElementById("series-sma").textContent = fmt(point.sma);
  document.getElementById("series-ewma").textContent = fmt(point.ewma);
  document.getElementById("series-trend").textContent = `${arrow[point.trend]} ${point.trend}`;
  document.getElementById("series-z").textContent = point.z == null ? "–" : `${point.z >= 0 ? "+" : ""}${point.z.toFixed(2)}`;
  const status = document.getElementById("series-status");
  status.className = `status ${point.anomaly ? "anomalous" : "normal"}`;
  status.textContent = point.anomaly ? "anomalous" : "normal";
}
if (page === "series") setupChart();

// ---- filter ----
const filter = document.getElementById("filter");
filter?.addEventListener("input", () => {
  const needle = filter.value.toLowerCase();
  for (const row of document.querySelectorAll("#series tbody tr[data-name]")) {
    row.hidden = !row.dataset.name.toLowerCase().includes(needle);
  }
});

// ---- live connection ----
const known = new Set();
function connect(delay = 500) {
  const status = document.getElementById("connection");
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onopen = () => {
    status.className = "connection live";
    status.textContent = "live";
    delay = 500;
    if (page === "series" && chartState.stream) {
      socket.send(JSON.stringify({ subscribe: { stream: chartState.stream, series: chartState.series } }));
    }
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") {
      for (const s of message.series) {
        recent.set(`${s.stream}/${s.series}`, s.recent ?? []);
        if (page === "overview") applyPoint(s, true);
      }
      for (const a of message.alerts) {
        known.add(a.id);
        if (a.state === "open") openIds.add(a.id);
      }
    } else if (message.type === "batch") {
      for (const update of message.updates) {
        if (update.type === "point" && page === "overview") applyPoint(update);
        if (update.type === "point" && page !== "overview") remember(update);
        if (update.type === "point" && page === "series") applySeriesPoint(update);
        if (update.type === "alert" || update.type === "ack") {
          const isNew = !known.has(update.id);
          known.add(update.id);
          // The count in the badge and title follows at once, not at the next status message.
          if (update.state === "open" && !openIds.has(update.id)) {
            openIds.add(update.id);
            setOpenAlerts(openAlerts + 1);
          } else if (update.state !== "open" && openIds.delete(update.id)) {
            setOpenAlerts(Math.max(0, openAlerts - 1));
          }
          applyAlert(update, isNew);
        }
      }
    } else if (message.type === "status") {
      setOpenAlerts(message.open_alerts);
      applyStreams(message.streams);
      showPaused(message.paused);
      const rate = document.getElementById("events-per-second");
      if (rate) rate.textContent = message.events_per_second.toFixed(1);
    }
  };
  socket.onclose = () => {
    status.className = "connection offline";
    status.textContent = "offline, reconnecting…";
    setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
  };
}
connect();
