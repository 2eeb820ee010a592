/* Overview: jobs-per-minute chart (uPlot) of completed and failed jobs over the last hour. */
(function () {
  "use strict";
  var plot = null;
  var box = null;

  function colors() {
    var css = window.getComputedStyle(document.documentElement);
    return {
      ok: css.getPropertyValue("--completed").trim() || "#1a7f37",
      bad: css.getPropertyValue("--discarded").trim() || "#b42318",
      axis: css.getPropertyValue("--muted").trim() || "#667",
      grid: css.getPropertyValue("--line").trim() || "#ddd"
    };
  }

  function build(data) {
    var c = colors();
    var xs = data.minutes.map(function (m) { return Date.parse(m) / 1000; });
    var opts = {
      width: Math.max(300, box.clientWidth),
      height: 220,
      scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(4, hi)]; } } },
      axes: [
        { stroke: c.axis, grid: { stroke: c.grid } },
        { stroke: c.axis, grid: { stroke: c.grid } }
      ],
      series: [
        {},
        { label: "completed", stroke: c.ok, width: 2, fill: c.ok + "22" },
        { label: "failed", stroke: c.bad, width: 2, fill: c.bad + "22" }
      ]
    };
    if (plot) { plot.destroy(); }
    while (box.firstChild) { box.removeChild(box.firstChild); }
    plot = new window.uPlot(opts, [xs, data.completed, data.failed], box);
  }

  function load() {
    fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { build(data); box.setAttribute("data-ready", "1"); } })
      .catch(function () { /* next refresh */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    box = document.getElementById("chart");
    if (!box || !window.uPlot) { return; }
    load();
    document.addEventListener("fairchild:refresh", load);
    document.addEventListener("fairchild:theme", load);
    window.addEventListener("resize", function () {
      if (plot) { plot.setSize({ width: Math.max(300, box.clientWidth), height: 220 }); }
    });
  });
})();
