// The overview: one row per series, updated live; new series get a row from the page's
// `<template id="series-row">`.

import { arrow, number, signed, slope } from "./format.js";
import { rowFrom } from "./chrome.js";
import { recent, remember, sparkline } from "./spark.js";

function seriesRow(point) {
  const name = `${point.stream}/${point.series}`;
  const existing = document.querySelector(`#series tr[data-name="${CSS.escape(name)}"]`);
  if (existing) return existing;
  const body = document.querySelector("#series tbody");
  body.querySelector("td.empty")?.closest("tr").remove();
  const row = rowFrom("series-row");
  row.dataset.name = name;
  row.querySelector("a").href = `/series/${encodeURIComponent(point.stream)}/${encodeURIComponent(point.series)}`;
  row.querySelector(".stream").textContent = point.stream;
  row.querySelector(".name").textContent = point.series;
  body.append(row);
  return row;
}

/** A series' latest point; from a snapshot, its recent values are already known. */
export function applyPoint(point, fromSnapshot = false) {
  const row = seriesRow(point);
  const points = fromSnapshot ? recent.get(row.dataset.name) ?? [] : remember(point);
  row.querySelector(".value").textContent = number(point.value);
  row.querySelector(".sma").textContent = number(point.sma);
  row.querySelector(".ewma").textContent = number(point.ewma);
  row.querySelector(".arrow").textContent = arrow[point.trend];
  row.querySelector(".slope").textContent = slope(point.slope);
  row.querySelector(".z").textContent = signed(point.z);
  const status = point.anomaly ? "anomalous" : "normal";
  row.className = status;
  const badge = row.querySelector(".status");
  badge.className = `status ${status}`;
  badge.textContent = status;
  row.querySelector("polyline").setAttribute("points", sparkline(points));
}

export function setupFilter() {
  const filter = document.getElementById("filter");
  filter?.addEventListener("input", () => {
    const needle = filter.value.toLowerCase();
    for (const row of document.querySelectorAll("#series tbody tr[data-name]")) {
      row.hidden = !row.dataset.name.toLowerCase().includes(needle);
    }
  });
}
