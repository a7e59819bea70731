// Tidewatch dashboard script: progressive enhancement over server-rendered pages.
"use strict";

// Filter the series table by name.
const filter = document.getElementById("filter");
if (filter) {
  filter.addEventListener("input", () => {
    const needle = filter.value.toLowerCase();
    for (const row of document.querySelectorAll("#series tbody tr[data-name]")) {
      row.hidden = !row.dataset.name.toLowerCase().includes(needle);
    }
  });
}

// Acknowledge an alert: JSON POST (CSRF-safe), then reflect the stored state.
for (const button of document.querySelectorAll("button.ack")) {
  button.addEventListener("click", async () => {
    const note = window.prompt("Note (optional):", "") ?? null;
    if (note === null) return;
    button.disabled = true;
    const response = await fetch(`/api/alerts/${encodeURIComponent(button.dataset.id)}/ack`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ note }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      window.alert(`Could not acknowledge: ${body.error ?? response.status}`);
      button.disabled = false;
      return;
    }
    const alert = await response.json();
    const row = button.closest("tr");
    row.className = alert.state;
    row.querySelector(".state").textContent = alert.state;
    row.querySelector(".acked").textContent = alert.acked_by ?? "";
    button.remove();
  });
}
