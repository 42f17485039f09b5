// veriframe portal: progressive enhancement only. Without this file every form still posts and a
// running job's page refreshes itself; with it: drag and drop, upload progress, live job progress.
"use strict";

function setupDropzone(zone) {
  const input = zone.querySelector("input[type=file]");
  const hint = zone.querySelector("[data-drop-hint]");
  if (hint) hint.hidden = false;
  ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      input.dispatchEvent(new Event("change"));
    }
  });
}

function problemText(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    return body.detail || body.title || ("HTTP " + xhr.status);
  } catch (err) {
    return "The server answered HTTP " + xhr.status + ".";
  }
}

function setupJobForm(form) {
  const status = form.querySelector("[data-form-status]");
  const bar = form.querySelector("[data-upload-progress]");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    if (bar) {
      bar.hidden = false;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      });
    }
    if (status) status.textContent = "Uploading…";
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        const body = JSON.parse(xhr.responseText);
        if (status) status.textContent = "Submitted; opening the job…";
        window.location.assign(body.url);
      } else {
        button.disabled = false;
        if (bar) bar.hidden = true;
        if (status) status.textContent = problemText(xhr);
      }
    });
    xhr.addEventListener("error", () => {
      button.disabled = false;
      if (status) status.textContent = "The upload failed; check your connection and try again.";
    });
    xhr.send(new FormData(form));
  });
}

function followJob(section) {
  const url = section.getAttribute("data-job-status");
  const stage = section.querySelector("[data-job-stage]");
  const bar = section.querySelector("[data-job-percent]");
  const meta = document.querySelector("meta[http-equiv=refresh]");
  if (meta) meta.remove(); // we poll instead of reloading the whole page
  const poll = () => {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => r.json())
      .then((job) => {
        if (job.done) { window.location.reload(); return; }
        stage.textContent = job.state.charAt(0).toUpperCase() + job.state.slice(1) + ": " + job.stage;
        bar.value = job.percent;
        window.setTimeout(poll, 1000);
      })
      .catch(() => window.setTimeout(poll, 3000));
  };
  window.setTimeout(poll, 700);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-dropzone]").forEach(setupDropzone);
  document.querySelectorAll("form[data-job-form]").forEach(setupJobForm);
  document.querySelectorAll("[data-job-status]").forEach(followJob);
});
