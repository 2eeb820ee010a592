/* Workflow view: the DAG of a workflow, laid out by dagre and drawn as SVG.
   Solid edges: a job waits for another's result (a Future); dashed: parent spawned child.
   Nodes are coloured by state and link to the job. Wheel pans, Ctrl/⌘+wheel zooms, drag pans.
   Live: on each refresh the workflow JSON is re-read; states are recoloured in place and
   the graph is laid out again only when jobs were added. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var NODE_W = 190, NODE_H = 38;
  var box, status, svg, viewport, view = { x: 20, y: 20, k: 1 };
  var nodes = {};          // id -> <g>
  var known = "";          // sorted ids of the drawn graph
  var loading = false;

  function el(name, attrs) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); } }
    return e;
  }

  function shortTask(task) {
    var parts = task.split(".");
    var name = parts[parts.length - 1];
    return name.length > 22 ? name.slice(0, 21) + "…" : name;
  }

  function apply() {
    if (viewport) { viewport.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")"); }
  }

  function fit(width, height) {
    var w = box.clientWidth || 800, h = box.clientHeight || 600;
    var k = Math.min(w / (width + 40), h / (height + 40), 1.5);
    view.k = k; view.x = (w - width * k) / 2; view.y = Math.max(10, (h - height * k) / 2);
    apply();
  }

  function initialView(width, height, focus) {
    var w = box.clientWidth || 800, h = box.clientHeight || 600;
    var k = Math.min(w / (width + 40), h / (height + 40), 1.5);
    if (k >= 0.6) { fit(width, height); return; }
    // Big graphs: keep labels readable and start at the root; pan and zoom to explore.
    view.k = 0.85;
    view.x = 30 - (focus ? focus.x - NODE_W / 2 : 0) * view.k;
    view.y = focus ? h / 2 - focus.y * view.k : 20;
    apply();
  }

  function draw(data) {
    var g = new window.dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 12, ranksep: 60, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(function () { return {}; });
    var byId = {};
    data.jobs.forEach(function (j) { byId[j.id] = j; g.setNode(j.id, { width: NODE_W, height: NODE_H }); });
    var kinds = {};
    data.edges.forEach(function (e) {
      g.setEdge(e.upstream, e.downstream, { weight: 2 });
      kinds[e.upstream + ">" + e.downstream] = "dep";
    });
    data.jobs.forEach(function (j) {
      if (j.parent_id && byId[j.parent_id] && !kinds[j.parent_id + ">" + j.id] && !kinds[j.id + ">" + j.parent_id]) {
        g.setEdge(j.parent_id, j.id, { weight: 1 });
        kinds[j.parent_id + ">" + j.id] = "parent";
      }
    });
    window.dagre.layout(g);

    while (box.firstChild) { box.removeChild(box.firstChild); }
    nodes = {};
    var size = g.graph();
    svg = el("svg", { "class": "dag", width: "100%", height: "100%", role: "img",
                      "aria-label": "Workflow graph of " + data.jobs.length + " jobs" });
    var defs = el("defs", {});
    var marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
                                markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", "class": "arrowhead" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    viewport = el("g", { "class": "viewport" });
    var edgeLayer = el("g", { "class": "edges" });
    var nodeLayer = el("g", { "class": "nodes" });
    g.edges().forEach(function (e) {
      var pts = g.edge(e).points || [];
      if (!pts.length) { return; }
      var d = "M" + pts.map(function (p) { return p.x.toFixed(1) + "," + p.y.toFixed(1); }).join(" L");
      edgeLayer.appendChild(el("path", { d: d, "class": "edge " + (kinds[e.v + ">" + e.w] || "dep"),
                                         "marker-end": "url(#arrow)" }));
    });
    g.nodes().forEach(function (id) {
      var n = g.node(id), j = byId[id];
      if (!j) { return; }
      var link = el("a", { href: "/jobs/" + id });
      var node = el("g", { "class": "node state-" + j.state, "data-id": id, "data-state": j.state,
                           transform: "translate(" + (n.x - NODE_W / 2) + "," + (n.y - NODE_H / 2) + ")" });
      var title = el("title", {});
      title.textContent = j.task + " · " + j.state + " · " + id;
      node.appendChild(title);
      node.appendChild(el("rect", { width: NODE_W, height: NODE_H, rx: 7, ry: 7 }));
      var t1 = el("text", { x: 10, y: 16, "class": "label" });
      t1.textContent = shortTask(j.task);
      var t2 = el("text", { x: 10, y: 30, "class": "sub" });
      t2.textContent = j.state + " · " + id.slice(0, 8);
      node.appendChild(t1); node.appendChild(t2);
      link.appendChild(node);
      nodeLayer.appendChild(link);
      nodes[id] = node;
    });
    viewport.appendChild(edgeLayer);
    viewport.appendChild(nodeLayer);
    svg.appendChild(viewport);
    box.appendChild(svg);
    box.setAttribute("data-nodes", String(data.jobs.length));
    box.setAttribute("data-width", String(Math.round(size.width)));
    box.setAttribute("data-height", String(Math.round(size.height)));
    var root = g.node(data.id);
    return { width: size.width, height: size.height, root: root ? { x: root.x, y: root.y } : null };
  }

  function recolor(data) {
    data.jobs.forEach(function (j) {
      var node = nodes[j.id];
      if (!node || node.getAttribute("data-state") === j.state) { return; }
      node.setAttribute("class", "node state-" + j.state);
      node.setAttribute("data-state", j.state);
      var sub = node.querySelector("text.sub");
      if (sub) { sub.textContent = j.state + " · " + j.id.slice(0, 8); }
      var title = node.querySelector("title");
      if (title) { title.textContent = j.task + " · " + j.state + " · " + j.id; }
    });
  }

  function load(first) {
    if (loading) { return; }
    loading = true;
    if (first) { status.textContent = "laying out…"; }
    fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var ids = data.jobs.map(function (j) { return j.id; }).sort().join(",");
        if (ids !== known) {
          var t0 = Date.now();
          var size = draw(data);
          if (first || !known) { initialView(size.width, size.height, size.root); } else { apply(); }
          known = ids;
          status.textContent = data.jobs.length + " jobs laid out in " + (Date.now() - t0) + " ms" +
            (data.truncated ? " (graph truncated: " + data.total + " jobs)" : "") +
            " · drag or scroll to pan, Ctrl+scroll to zoom";
        } else {
          recolor(data);
        }
        box.setAttribute("data-ready", "1");
      })
      .catch(function (e) { status.textContent = "could not draw the graph: " + e; })
      .then(function () { loading = false; });
  }

  function zoomAt(factor, cx, cy) {
    var k = Math.max(0.05, Math.min(4, view.k * factor));
    view.x = cx - (cx - view.x) * (k / view.k);
    view.y = cy - (cy - view.y) * (k / view.k);
    view.k = k;
    apply();
  }

  function bindPanZoom() {
    box.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var rect = box.getBoundingClientRect();
      if (ev.ctrlKey || ev.metaKey) {
        zoomAt(Math.exp(-ev.deltaY * 0.002), ev.clientX - rect.left, ev.clientY - rect.top);
      } else {
        view.x -= ev.deltaX; view.y -= ev.deltaY; apply();
      }
    }, { passive: false });
    var drag = null;
    box.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0) { return; }
      drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
    });
    window.addEventListener("pointermove", function (ev) {
      if (!drag) { return; }
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; box.classList.add("dragging"); }
      view.x = drag.vx + dx; view.y = drag.vy + dy; apply();
    });
    window.addEventListener("pointerup", function () {
      if (drag && drag.moved) {
        box.addEventListener("click", function stop(e) { e.preventDefault(); e.stopPropagation(); }, { capture: true, once: true });
      }
      drag = null; box.classList.remove("dragging");
    });
    function center(f) { zoomAt(f, box.clientWidth / 2, box.clientHeight / 2); }
    document.getElementById("zoom-in").addEventListener("click", function () { center(1.25); });
    document.getElementById("zoom-out").addEventListener("click", function () { center(0.8); });
    document.getElementById("zoom-fit").addEventListener("click", function () {
      fit(Number(box.getAttribute("data-width")) || 800, Number(box.getAttribute("data-height")) || 600);
    });
    document.getElementById("zoom-reset").addEventListener("click", function () {
      view = { x: 20, y: 20, k: 1 }; apply();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    box = document.getElementById("graph");
    status = document.getElementById("graph-status");
    if (!box || !window.dagre) { return; }
    bindPanZoom();
    load(true);
    document.addEventListener("fairchild:refresh", function () { load(false); });
  });
})();
