// Pipeline progress on the overview and the status page: per stream its counters, watermark and
// source; per partition its offset, lag, watermark and state.

import { bytes, count, dash, millis, span, time } from "./format.js";
import { page, setField } from "./chrome.js";

export function applyStreams(streams) {
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
      // A consumer group moved partitions (or the first ones arrived): the server draws the
      // table, so fetch the page again rather than patch rows in.
      location.reload();
      return;
    }
    for (const p of s.partitions) applyPartition(s.name, p);
  }
}

function applyPartition(stream, p) {
  const row = document.querySelector(`tr[data-partition="${CSS.escape(`${stream}/${p.split}`)}"]`);
  if (!row) return;
  setField(row, "next_offset", count(p.next_offset));
  setField(row, "lag", count(p.lag));
  setField(row, "watermark", time(p.watermark));
  const state = p.idle ? "idle" : p.watermark == null ? "waiting" : "active";
  const badge = row.querySelector('[data-field="state"]');
  badge.className = `state ${state}`;
  badge.textContent = state;
}

/** Whether the status page shows other partitions of stream `s` than it now reports. */
function partitionsChanged(s) {
  const table = [...document.querySelectorAll("table[data-partitions-of]")].find(
    (t) => t.dataset.partitionsOf === s.name);
  if (!table) return true;
  const shown = [...table.querySelectorAll("tr[data-partition]")].map((row) => row.dataset.partition).sort();
  const reported = s.partitions.map((p) => `${s.name}/${p.split}`).sort();
  return shown.join("\n") !== reported.join("\n");
}

/** The status page's engine section: the last checkpoint, each shard, each sink. */
export function applyEngine(message) {
  const scope = document.querySelector("[data-engine]");
  if (!scope) return;
  const c = message.checkpoints;
  if (c && c.written_at != null) {
    setField(scope, "checkpoint_age", `${span(Date.now() - c.written_at)} ago`);
    setField(scope, "checkpoints", String(c.count));
    setField(scope, "checkpoint_took", millis(c.took_ms));
    setField(scope, "checkpoint_pause", millis(c.longest_pause_ms));
    setField(scope, "checkpoint_bytes", bytes(c.bytes));
  }
  (message.shards || []).forEach((s, i) => {
    const row = document.querySelector(`tr[data-shard="${i}"]`);
    if (!row) return;
    setField(row, "queued", String(s.queued));
    setField(row, "busy", span(s.busy_ms));
  });
  (message.sinks || []).forEach((s, i) => {
    const row = document.querySelector(`tr[data-sink="${i}"]`);
    if (!row) return;
    setField(row, "writes", String(s.writes));
    setField(row, "mean_write", s.writes ? millis(s.write_us / s.writes / 1000) : dash);
  });
}
