// Live progress of a job page: polls the JSON API (the page itself is complete without this
// script), updates the progress table and the status, reloads once the job has ended so that
// the server renders its ranking; the cancel button (POST /v1/jobs/{id}/cancel) and the delete
// button (DELETE /v1/jobs/{id}, then back to the leaderboard).
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
    if (job.overall && document.getElementById("overall")) {
      document.getElementById("overall-bar").value = job.overall.fraction;
      document.getElementById("overall-text").textContent = job.overall.text;
    }
    for (const p of job.progress) {
      const row = document.querySelector('#progress tr[data-model="' + CSS.escape(p.model) + '"]');
      if (!row) continue;
      cell(row, "status").textContent = p.status;
      cell(row, "status").className = "status-" + p.status;
      cell(row, "images").textContent = p.images_done + "/" + p.images_total;
      const rate = cell(row, "rate"); // a validation's rows have none
      if (rate) rate.textContent = p.images_per_second ? Math.round(p.images_per_second) : "";
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
      const response = await fetch("/v1/jobs/" + id + "/cancel", { method: "POST", headers: headers });
      const body = await response.json();
      message.textContent = response.ok ? "Cancelled." : body.detail || "Could not cancel.";
      if (response.ok) poll();
    });
  }

  const remove = document.getElementById("delete");
  if (remove) {
    remove.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (!window.confirm("Delete this job and its results?")) return;
      const key = remove.elements["api-key"] ? remove.elements["api-key"].value : "";
      const headers = key ? { Authorization: "Bearer " + key } : {};
      const response = await fetch("/v1/jobs/" + id, { method: "DELETE", headers: headers });
      if (response.ok) {
        window.location.assign("/");
        return;
      }
      const body = await response.json();
      document.getElementById("delete-message").textContent = body.detail || "Could not delete.";
    });
  }
  if (!terminal.has(root.dataset.status)) setTimeout(poll, 1000);
})();
