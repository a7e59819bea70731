// How the dashboard writes numbers and times: the same as the server's pages (src/web/pages/format.rs
// `number`, `seconds`, `score_text`, ...; src/clock.rs `format_ms`), so a value looks the same on
// first paint and after a live update. tests/it/format.rs runs both over a table of cases.

export const dash = "–";

/** `12.345`, or `1234` from a thousand up (format.rs `number`). */
export const number = (v) => (v == null ? dash : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(3));

/** `+1.23`: a signed value with `digits` decimals. */
export const signed = (v, digits = 2) => (v == null ? dash : `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`);

export const count = (n) => (n == null ? dash : String(n));

/** Epoch ms as RFC 3339 UTC with no trailing zero in the fraction, as the server writes it:
 *  `2026-11-28T09:00:00Z`, `2026-11-28T09:00:00.5Z`; the number itself when out of range. */
export function time(ms) {
  if (ms == null) return dash;
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return String(ms);
  return date.toISOString().replace(/\.?0+Z$/, "Z");
}

/** A span of time: `12.5 s`, `4 min 10 s`, `3 h 5 min`, `2 d 4 h` (format.rs `seconds`). */
export function span(ms) {
  const sign = ms < 0 ? "-" : "", s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return `${sign}${(Math.abs(ms) / 1000).toFixed(1)} s`;
  if (s < 3600) return `${sign}${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${sign}${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** `12.3 ms` (format.rs `millis`). */
export const millis = (ms) => `${ms.toFixed(1)} ms`;

/** `20.1 MB` (format.rs `byte_size`). */
export function bytes(n) {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

export const arrow = { rising: "↗", falling: "↘", flat: "→" };

/** `+0.0123/s` (the overview's slope). */
export const slope = (v) => (v == null ? dash : `${v >= 0 ? "+" : ""}${v.toFixed(4)}/s`);

export const verdictText = { real: "real", false_alarm: "false alarm" };

/** The band of normal values, or "unbounded" (format.rs `band_text`). */
export const band = (lower, upper) =>
  lower == null || upper == null ? "unbounded" : `${number(lower)} – ${number(upper)}`;

/** The likelihood score and tail probability, or |z| for a threshold alert (`score_text`). */
export function score(alert) {
  const p = alert.probability == null ? "" : `p ${alert.probability.toExponential(1)}`;
  if (alert.score == null) return p;
  return alert.method === "threshold"
    ? `|z| ${alert.score.toFixed(1)}, ${p}`
    : `${alert.score.toFixed(1)} σ, ${p}`;
}

/** What fired and what the expectation followed: `likelihood, daily pattern` (`why_text`). */
export function why(alert) {
  const model = alert.expectation;
  if (!model || model === "flat") return alert.method;
  const pattern = { "1d": "daily pattern", "1w": "weekly pattern" }[model] ?? `${model} pattern`;
  return `${alert.method}, ${pattern}`;
}

/** Who acknowledged and when (alerts.rs `alert_row`). */
export const acked = (alert) => (alert.acked_by && alert.acked_at != null ? `${alert.acked_by}, ${time(alert.acked_at)}` : "");
