// The overview: one page of series rows (the server filters, orders and pages them), updated
// live. A first page that is not full yet grows: new series get a row from the page's
// `<template id="series-row">`; other pages keep the rows they were given.

import { arrow, number, signed, slope } from "./format.js";
import { rowFrom } from "./chrome.js";
import { recent, remember, sparkline } from "./spark.js";

function seriesRow(point) {
  const name = `${point.stream}/${point.series}`;
  const existing = document.querySelector(`#series tr[data-name="${CSS.escape(name)}"]`);
  if (existing) return existing;
  const table = document.getElementById("series");
  const rows = table.querySelectorAll("tbody tr[data-name]").length;
  if (table.dataset.grows !== "true" || rows >= Number(table.dataset.pageSize)) return null;
  const body = table.querySelector("tbody");
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
  if (!row) return;
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

/**
 * What the overview subscribes to: a page that may still grow hears of every series (there are
 * fewer than a page of them); any other page hears of its own rows only (protocol v2).
 */
export function overviewSubscription() {
  const table = document.getElementById("series");
  if (!table || table.dataset.grows === "true") return null;
  const series = [...table.querySelectorAll("tbody tr[data-name]")].map((row) => ({
    stream: row.querySelector(".stream").textContent,
    series: row.querySelector(".name").textContent,
  }));
  return { series };
}
