// The alerts table (alerts page, series page): rows update live, new alerts get a row from the
// page's `<template id="alert-row">`, and a person acknowledges (or judges) an alert with a note
// typed into the page's acknowledgement dialog, or several at once with the bulk controls.

import { acked, band, number, score, signed, time, verdictText, why } from "./format.js";
import { notice, rowFrom, toLogin } from "./chrome.js";
import { alertSpark, recent } from "./spark.js";

/**
 * The row's list of earlier acknowledgements, with the one it showed until now added when
 * `alert` carries a newer one: the cell shows the last, the list every one before it.
 */
function earlierAcks(cell, alert) {
  let history = cell.querySelector("details.ack-history");
  const shownAt = cell.dataset.ackedAt;
  if (shownAt && alert.acked_at != null && String(alert.acked_at) !== shownAt) {
    const verdict = cell.querySelector(":scope > .verdict")?.textContent;
    const note = cell.querySelector(":scope > small")?.textContent;
    const line = `${cell.firstChild?.textContent?.trim() ?? ""}${verdict ? `: ${verdict}` : ""}${note ? ` — ${note}` : ""}`;
    if (!history) {
      history = Object.assign(document.createElement("details"), { className: "ack-history" });
      history.append(document.createElement("summary"), document.createElement("ol"));
    }
    history.querySelector("ol").append(Object.assign(document.createElement("li"), { textContent: line }));
    history.querySelector("summary").textContent = `${history.querySelectorAll("li").length} earlier`;
  }
  if (alert.acked_at != null) cell.dataset.ackedAt = alert.acked_at;
  return history;
}

/** The state, acknowledgement, verdict and note cells of an alert's row. */
function stateCells(row, alert) {
  row.className = alert.state;
  row.querySelector(".state-name").textContent = alert.state;
  const cell = row.querySelector(".acked");
  const history = earlierAcks(cell, alert);
  cell.textContent = acked(alert);
  if (alert.verdict) {
    cell.append(" ", Object.assign(document.createElement("span"), { className: `verdict ${alert.verdict}`, textContent: verdictText[alert.verdict] }));
    row.querySelectorAll("button.judge").forEach((b) => b.remove());
  }
  if (alert.note) cell.append(document.createElement("br"), Object.assign(document.createElement("small"), { textContent: alert.note }));
  if (history) cell.append(history);
  if (alert.state !== "open") {
    row.querySelector("button.ack")?.remove();
    row.querySelector("input.pick")?.remove();
    updateBulk();
  }
}

/** What the detector saw: the value against the expected one and band, the score, why. */
function detectorCells(row, alert) {
  row.querySelector(".time").textContent = time(alert.ts);
  row.querySelector(".value").textContent = number(alert.value);
  row.querySelector(".expected").textContent = number(alert.expected);
  row.querySelector(".band").textContent = band(alert.lower, alert.upper);
  const z = row.querySelector(".zv");
  z.textContent = signed(alert.z);
  z.className = `zv ${alert.direction}`;
  row.querySelector(".score").textContent = score(alert);
  row.querySelector(".why").textContent = why(alert);
  const severity = row.querySelector(".severity");
  severity.textContent = alert.severity;
  severity.className = `severity ${alert.severity}`;
}

/** A row for an alert this page did not have, from the template. */
function newRow(alert) {
  const row = rowFrom("alert-row");
  row.dataset.id = alert.id;
  row.querySelector(".stream").textContent = alert.stream;
  row.querySelector(".name").textContent = alert.series;
  const spark = alertSpark(recent.get(`${alert.stream}/${alert.series}`) ?? [], alert);
  if (spark) row.querySelector(".around").append(spark);
  const box = row.querySelector("input.pick");
  if (box) {
    box.value = alert.id;
    box.setAttribute("aria-label", `Select the alert of ${alert.stream}/${alert.series}`);
  }
  row.querySelectorAll("button.ack, button.judge").forEach((button) => (button.dataset.id = alert.id));
  row.querySelector("a.login-to-ack")?.setAttribute("href", `/login?next=${encodeURIComponent(location.pathname)}`);
  row.classList.add("fresh");
  return row;
}

/** An alert opened or changed. `shown`: this page lists the alerts of that series. */
export function applyAlert(alert, isNew, shown) {
  if (!shown) {
    if (isNew && alert.state === "open") notice(`New alert: ${alert.stream}/${alert.series} (z ${alert.z.toFixed(1)})`);
    return;
  }
  let row = document.querySelector(`#alerts tr[data-id="${CSS.escape(alert.id)}"]`);
  if (!row) {
    // New alerts go on top of the newest page, not into an older one.
    if (alert.state !== "open" || document.querySelector(".alerts-page[data-newest='false']")) return;
    const body = document.querySelector("#alerts tbody");
    body.querySelector("td.empty")?.closest("tr").remove();
    row = newRow(alert);
    body.prepend(row);
    notice(`New alert: ${alert.stream}/${alert.series}`);
  }
  detectorCells(row, alert);
  stateCells(row, alert);
}

/** POSTs an acknowledgement as JSON (CSRF-safe); `null` when the page went to log in. */
async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status === 401) {
    toLogin();
    return null;
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error ?? `error ${response.status}`);
  return answer;
}

// ---- one alert: the acknowledgement dialog ----
const dialog = document.getElementById("ack-dialog");

/** Opens the dialog for the alert of `button` (with its verdict, for a judge button). */
function openDialog(button) {
  const row = button.closest("tr");
  const verdict = button.dataset.verdict;
  dialog.dataset.id = button.dataset.id;
  dialog.dataset.verdict = verdict ?? "";
  dialog.querySelector(".target").textContent =
    `${row.querySelector(".stream").textContent}/${row.querySelector(".name").textContent}`;
  dialog.querySelector(".verdict-line").hidden = !verdict;
  dialog.querySelector(".verdict-line .verdict").textContent = verdict ? verdictText[verdict] : "";
  dialog.querySelector(".error").hidden = true;
  dialog.querySelector("#ack-note").value = "";
  dialog.showModal();
}

async function confirmDialog(event) {
  if (event.submitter?.value !== "confirm") return;
  event.preventDefault(); // stay open until the server has answered
  const { id, verdict } = dialog.dataset;
  const note = dialog.querySelector("#ack-note").value;
  const confirm = dialog.querySelector("#ack-confirm");
  confirm.disabled = true;
  try {
    const alert = await post(`/api/alerts/${encodeURIComponent(id)}/ack`, verdict ? { note, verdict } : { note });
    if (!alert) return;
    const row = document.querySelector(`#alerts tr[data-id="${CSS.escape(id)}"]`);
    if (row) stateCells(row, alert);
    dialog.close();
  } catch (error) {
    const message = dialog.querySelector(".error");
    message.textContent = `Could not acknowledge: ${error.message}`;
    message.hidden = false;
  } finally {
    confirm.disabled = false;
  }
}

// ---- several alerts: the bulk controls ----
const ackSelected = document.getElementById("ack-selected");
const picked = () => [...document.querySelectorAll("#alerts input.pick:checked")].map((box) => box.value);

function updateBulk() {
  if (!ackSelected) return;
  const n = picked().length;
  ackSelected.disabled = n === 0;
  ackSelected.textContent = n ? `Acknowledge ${n} selected` : "Acknowledge selected";
}

async function acknowledgeSelected() {
  const ids = picked();
  if (!ids.length) return;
  ackSelected.disabled = true;
  const note = document.getElementById("bulk-note");
  const error = document.getElementById("bulk-error");
  const verdict = document.getElementById("bulk-verdict").value || undefined;
  try {
    const alerts = await post("/api/alerts/ack", { ids, note: note.value, verdict });
    if (!alerts) return;
    for (const alert of alerts) {
      const row = document.querySelector(`#alerts tr[data-id="${CSS.escape(alert.id)}"]`);
      if (row) stateCells(row, alert);
    }
    const all = document.getElementById("pick-all");
    if (all) all.checked = false;
    note.value = "";
    error.hidden = true;
  } catch (failure) {
    error.textContent = `Could not acknowledge: ${failure.message}`;
    error.hidden = false;
  }
  updateBulk();
}

export function setupAlerts() {
  // One listener for every row, those added live included.
  document.getElementById("alerts")?.addEventListener("click", (event) => {
    const button = event.target.closest("button.ack, button.judge");
    if (button && dialog) openDialog(button);
  });
  dialog?.querySelector("form").addEventListener("submit", confirmDialog);
  document.getElementById("alerts")?.addEventListener("change", (event) => {
    if (event.target.id === "pick-all") {
      for (const box of document.querySelectorAll("#alerts input.pick")) box.checked = event.target.checked;
    }
    updateBulk();
  });
  ackSelected?.addEventListener("click", acknowledgeSelected);
}
