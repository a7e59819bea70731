// What every page has: the open-alert count in the header and title, the live-connection state,
// the notice box, and the banner that says the pipeline is paused.

const baseTitle = document.title;
const alertsLink = document.querySelector('nav a[href="/alerts"]');
let openAlerts = Number(alertsLink?.querySelector(".badge")?.textContent ?? 0);

export const page = document.body.dataset.page;

export function setOpenAlerts(n) {
  openAlerts = n;
  document.title = n > 0 ? `(${n}) ${baseTitle}` : baseTitle;
  let badge = alertsLink.querySelector(".badge");
  if (n > 0 && !badge) {
    badge = Object.assign(document.createElement("span"), { className: "badge" });
    alertsLink.append(" ", badge);
  }
  if (badge) {
    badge.textContent = n;
    badge.hidden = n === 0;
  }
}

export const addOpenAlerts = (delta) => setOpenAlerts(Math.max(0, openAlerts + delta));

/** The live connection's state, announced to screen readers (the element is aria-live). */
export function setConnection(live) {
  const status = document.getElementById("connection");
  status.className = `connection ${live ? "live" : "offline"}`;
  status.textContent = live ? "live" : "offline, reconnecting…";
}

/** A short message in the corner; clicking it opens the alerts (or just closes it there). */
export function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = false;
  box.onclick = () => (page === "alerts" ? (box.hidden = true) : (location.href = "/alerts"));
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), 8000);
}

/** A failing sink pauses the pipeline (nothing is dropped); every page says so. */
export function showPaused(reason) {
  document.querySelectorAll(".paused.server").forEach((p) => p.remove());
  const banner = document.getElementById("paused");
  banner.hidden = !reason;
  banner.textContent = reason ? `Pipeline paused: ${reason}` : "";
}

/** Without a session where a token is needed the server says 401: log in, then come back. */
export function toLogin() {
  location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

/** Sets a `[data-field]` cell's text, touching the DOM only when it changed. */
export function setField(scope, field, text) {
  const cell = scope.querySelector(`[data-field="${field}"]`);
  if (cell && cell.textContent !== text) cell.textContent = text;
}

/** A row cloned from a `<template>` of the page (the server's own markup, blank). */
export function rowFrom(templateId) {
  return document.getElementById(templateId).content.firstElementChild.cloneNode(true);
}
