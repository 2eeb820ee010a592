/* Fairchild dashboard: theme toggle, action buttons, and live updates.
   Live updates: an EventSource on /api/events (fed by PostgreSQL NOTIFY) plus a slow
   periodic refresh as a safety net; on either, the page is re-fetched and each [data-live][id] region is
   swapped for the server-rendered (escaped) one. Data only ever goes into textContent. */
(function () {
  "use strict";

  var REFRESH_MS = 30000;     // safety net: every state change also arrives as an event
  var MIN_GAP_MS = 700;       // at most one refresh per this interval
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var lastRefresh = 0, pending = null, inflight = false;

  window.fairchild = window.fairchild || {};
  window.fairchild.csrf = csrf;
  window.fairchild.refreshes = 0;

  function setLive(state) {
    var el = document.getElementById("live");
    if (el) { el.setAttribute("data-state", state); el.title = "Live updates: " + state; }
  }

  function swapRegions(doc) {
    var regions = document.querySelectorAll("[data-live][id]");
    for (var i = 0; i < regions.length; i++) {
      var fresh = doc.getElementById(regions[i].id);
      if (fresh) {
        regions[i].replaceWith(document.importNode(fresh, true));
      }
    }
    bindActions(document);
  }

  function refresh() {
    pending = null;
    if (inflight) { schedule(); return; }
    if (document.visibilityState === "hidden") { return; }
    inflight = true;
    lastRefresh = Date.now();
    fetch(window.location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("logged out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        swapRegions(doc);
        window.fairchild.refreshes += 1;
        document.dispatchEvent(new CustomEvent("fairchild:refresh"));
      })
      .catch(function () { /* next event or tick retries */ })
      .then(function () { inflight = false; });
  }

  function schedule() {
    if (pending) { return; }
    var wait = Math.max(0, MIN_GAP_MS - (Date.now() - lastRefresh));
    pending = window.setTimeout(refresh, wait);
  }
  window.fairchild.schedule = schedule;

  function connect() {
    if (!window.EventSource) { setLive("polling"); return; }
    var es = new EventSource("/api/events");
    es.addEventListener("hello", function () { setLive("connected"); });
    es.addEventListener("change", function () { schedule(); });
    es.onerror = function () { setLive("reconnecting"); };
  }

  function bindActions(root) {
    var buttons = root.querySelectorAll("button[data-action]");
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      if (b.getAttribute("data-bound")) { continue; }
      b.setAttribute("data-bound", "1");
      b.addEventListener("click", onAction);
    }
  }

  function onAction(ev) {
    var b = ev.currentTarget;
    var question = b.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { return; }
    b.disabled = true;
    fetch(b.getAttribute("data-action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: "{}"
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (res) {
      if (!res.ok) { toast(res.body && res.body.error ? res.body.error : "failed"); }
      schedule();
    }).catch(function () { toast("request failed"); })
      .then(function () { b.disabled = false; });
  }

  function toast(text) {
    var el = document.createElement("div");
    el.className = "toast";
    el.textContent = text;
    document.body.appendChild(el);
    window.setTimeout(function () { el.remove(); }, 5000);
  }
  window.fairchild.toast = toast;

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) { toggle.addEventListener("click", function () { window.fairchildTheme.toggle(); }); }
    bindActions(document);
    connect();
    window.setInterval(schedule, REFRESH_MS);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { schedule(); }
    });
  });
})();
