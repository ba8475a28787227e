// The console's only script: keeps the figures of /system live by polling
// its JSON endpoint and filling in every element with a data-field (a path
// into the JSON: "outbox.rows", "projections.0.events_behind").
(function () {
  "use strict";
  function lookup(value, path) {
    return path.split(".").reduce(function (v, key) {
      return v === null || v === undefined ? undefined : v[key];
    }, value);
  }
  function format(value, kind) {
    if (value === null || value === undefined) return "\u2013";
    if (kind === "age") return Number(value).toFixed(1) + " s";
    if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) {
      return value.replace("T", " ").replace(/(\.\d{3})\d*/, "$1").replace(/Z$|\+00:00$/, " UTC");
    }
    return String(value);
  }
  function start(live) {
    var src = live.getAttribute("data-src");
    var every = Number(live.getAttribute("data-refresh-ms")) || 2000;
    var state = document.getElementById("live-state");
    function refresh() {
      fetch(src, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (figures) {
          live.querySelectorAll("[data-field]").forEach(function (el) {
            var text = format(lookup(figures, el.getAttribute("data-field")), el.getAttribute("data-format"));
            var target = el.querySelector("a") || el;
            if (target.textContent !== text) target.textContent = text;
          });
          if (state) { state.textContent = "live"; state.className = ""; }
        })
        .catch(function (error) {
          if (state) { state.textContent = "stale (" + error.message + ")"; state.className = "error"; }
        })
        .then(function () { setTimeout(refresh, every); });
    }
    setTimeout(refresh, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live) start(live);
  });
})();
