// The import progress page: polls the job's JSON progress and updates the counts; reloads
// once the job is done, so the server renders the channels and users imported.
(function () {
  "use strict";
  var root = document.getElementById("import-progress");
  if (!root || root.getAttribute("data-done") === "true") return;
  var url = root.getAttribute("data-progress-url");
  function set(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = String(value);
  }
  function show(job) {
    var p = job.progress;
    set("stage", job.stage_text);
    set("team-now", p.team || "");
    set("teams-done", p.teams_done);
    set("teams-total", p.teams_total);
    set("count-channels", p.channels);
    set("count-members", p.members);
    set("count-users", p.users_estimated ? p.users + " of about " + p.users_estimated : p.users);
    set("count-memberships", p.memberships_ensured);
    var bar = document.getElementById("teams-bar");
    if (bar) {
      bar.max = Math.max(p.teams_total, 1);
      bar.value = p.teams_done;
    }
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (job) {
        show(job);
        if (job.done) {
          window.location.reload();
          return;
        }
        set("poll-note", "This page updates by itself.");
        setTimeout(tick, 500);
      })
      .catch(function () {
        set("poll-note", "Lost contact with the server; retrying…");
        setTimeout(tick, 2000);
      });
  }
  setTimeout(tick, 250);
})();
