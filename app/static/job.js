// Live progress of a job page: polls the JSON API (the page itself is complete without this
// script), updates the progress table and the status, reloads once the job has ended so that
// the server renders its ranking; and the cancel button (DELETE /v1/jobs/{id}).
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const id = root.dataset.jobId;
  const terminal = new Set(["succeeded", "partial", "failed", "cancelled"]);
  const status = document.getElementById("job-status");
  const message = document.getElementById("cancel-message");

  function cell(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  async function poll() {
    let job;
    try {
      const response = await fetch("/v1/jobs/" + id, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      job = await response.json();
    } catch (err) {
      setTimeout(poll, 5000);
      return;
    }
    status.textContent = job.status;
    status.className = "status-" + job.status;
    for (const p of job.progress) {
      const row = document.querySelector('#progress tr[data-model="' + CSS.escape(p.model) + '"]');
      if (!row) continue;
      cell(row, "status").textContent = p.status;
      cell(row, "status").className = "status-" + p.status;
      cell(row, "images").textContent = p.images_done + "/" + p.images_total;
      cell(row, "rate").textContent = p.images_per_second ? Math.round(p.images_per_second) : "";
      cell(row, "error").textContent = p.error || "";
    }
    if (terminal.has(job.status)) {
      if (root.dataset.status !== job.status) window.location.reload();
      return;
    }
    setTimeout(poll, 2000);
  }

  const form = document.getElementById("cancel");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const key = form.elements["api-key"] ? form.elements["api-key"].value : "";
      const headers = key ? { Authorization: "Bearer " + key } : {};
      const response = await fetch("/v1/jobs/" + id, { method: "DELETE", headers: headers });
      const body = await response.json();
      message.textContent = response.ok ? "Cancelled." : body.detail || "Could not cancel.";
      if (response.ok) poll();
    });
  }
  if (!terminal.has(root.dataset.status)) setTimeout(poll, 1000);
})();
