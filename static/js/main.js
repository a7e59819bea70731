// Tidewatch dashboard script: progressive enhancement over server-rendered pages. The pages are
// complete without it; with it they update live. One module per concern: format (how values
// read, as the server writes them), chrome (header, notices), streams (pipeline progress),
// overview, alerts, series, spark (sparklines), live (the WebSocket).

import { addOpenAlerts, page, setOpenAlerts, showPaused } from "./chrome.js";
import { applyAlert, setupAlerts } from "./alerts.js";
import { connect } from "./live.js";
import { applyPoint, overviewSubscription } from "./overview.js";
import { applySeriesPoint, setupChart, shown } from "./series.js";
import { recent, remember } from "./spark.js";
import { applyEngine, applyStreams } from "./streams.js";

const known = new Set(); // alerts this page has heard of
const openIds = new Set(); // of which open

/** Whether this page lists the alerts of `alert`'s series. */
const listsAlertsOf = (alert) =>
  page === "alerts" || (page === "series" && alert.stream === shown.stream && alert.series === shown.series);

function onAlert(alert) {
  const isNew = !known.has(alert.id);
  known.add(alert.id);
  // The count in the badge and title follows at once, not at the next status message.
  if (alert.state === "open" && !openIds.has(alert.id)) {
    openIds.add(alert.id);
    addOpenAlerts(1);
  } else if (alert.state !== "open" && openIds.delete(alert.id)) {
    addOpenAlerts(-1);
  }
  applyAlert(alert, isNew, listsAlertsOf(alert));
}

const handlers = {
  open(socket) {
    if (page === "series" && shown.stream) {
      socket.send(JSON.stringify({ subscribe: { stream: shown.stream, series: shown.series } }));
    } else if (page === "overview") {
      const subscription = overviewSubscription();
      if (subscription) socket.send(JSON.stringify({ subscribe: subscription }));
    }
  },
  snapshot(message) {
    for (const s of message.series) {
      recent.set(`${s.stream}/${s.series}`, s.recent ?? []);
      if (page === "overview") applyPoint(s, true);
    }
    for (const a of message.alerts) {
      known.add(a.id);
      if (a.state === "open") openIds.add(a.id);
    }
  },
  update(update) {
    if (update.type === "point") {
      if (page === "overview") applyPoint(update);
      else remember(update);
      if (page === "series") applySeriesPoint(update);
    } else if (update.type === "alert" || update.type === "ack") {
      onAlert(update);
    }
  },
  status(message) {
    setOpenAlerts(message.open_alerts);
    applyStreams(message.streams);
    applyEngine(message);
    showPaused(message.paused);
    const rate = document.getElementById("events-per-second");
    if (rate) rate.textContent = message.events_per_second.toFixed(1);
  },
};

setupAlerts();
if (page === "series") setupChart();
connect(handlers);
