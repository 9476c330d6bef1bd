// irene energy report: inlined into the page by irene.report.html (no external resources).
// Reads the JSON in #irene-data and draws the breakdown tree, summary, type shares and top lists.
// Numbers arrive pre-formatted by Python (one formatting code for terminal and page).
"use strict";

(function () {
  const DATA = JSON.parse(document.getElementById("irene-data").textContent);
  // "measured", or "synthetic 'measured'" for trees whose ground truth is a formula's output
  const MEASURED = DATA.measuredWord || "measured";
  const OPEN_DEPTH = 2; // rows open on load down to this depth (root = 0)
  const FEATURE_LABELS = [
    ["num_parameters", "parameters", (v) => Math.round(v).toLocaleString("en")],
    ["flops", "FLOPs", (v) => fmtNumber(v) + " MFLOP"],
    ["mem_bytes", "memory moved", (v) => fmtNumber(v) + " MiB"],
    ["times_mean", "time per call", fmtSeconds],
    ["cpu", "CPU utilisation", (v) => fmtNumber(v) + " %"],
    ["mem", "memory use", (v) => fmtNumber(v) + " %"],
    ["gpu", "GPU utilisation", (v) => fmtNumber(v) + " %"],
    ["gpu_mem", "GPU memory", (v) => fmtNumber(v) + " %"],
    ["gpu_clk", "GPU clock", (v) => fmtNumber(v) + " MHz"],
    ["gpu_mem_clk", "GPU memory clock", (v) => fmtNumber(v) + " MHz"],
    ["gpu_energy_mean", "GPU energy (NVML)", fmtJoules],
  ];

  function fmtNumber(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4) return Math.round(v).toLocaleString("en");
    return Number(v.toPrecision(3)).toString();
  }
  function fmtSeconds(v) {
    if (v === 0) return "0 s";
    const a = Math.abs(v);
    if (a >= 1) return v.toPrecision(3) + " s";
    if (a >= 1e-3) return (v * 1e3).toPrecision(3) + " ms";
    return (v * 1e6).toPrecision(3) + " µs";
  }
  function fmtJoules(v) {
    if (v === 0) return "0 J";
    const a = Math.abs(v);
    if (a >= 1) return v.toPrecision(3) + " J";
    if (a >= 1e-3) return (v * 1e3).toPrecision(3) + " mJ";
    if (a >= 1e-6) return (v * 1e6).toPrecision(3) + " µJ";
    return (v * 1e9).toPrecision(3) + " nJ";
  }
  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
    return node;
  }
  function errClass(err) {
    if (err === null || err === undefined) return "";
    const a = Math.abs(err);
    return a < 10 ? "good" : a < 25 ? "fair" : "poor";
  }

  // ---------------------------------------------------------------- tooltip
  const tip = document.getElementById("tooltip");
  function showTip(node, event) {
    const rows = [
      ["node type", node.kind + " · " + node.itype],
      ["energy", node.energy + " (" + node.model + " of model)"],
    ];
    if (node.predicted) rows.push(["predicted", node.predicted]);
    if (node.measured) rows.push([MEASURED, node.measured]);
    if (node.errText) rows.push(["error", node.errText]);
    if (node.children.length) rows.push(["children", String(node.children.length)]);
    for (const [key, label, fmt] of FEATURE_LABELS) {
      const v = node.f[key];
      if (v !== undefined && (v !== 0 || key === "num_parameters" || key === "flops")) {
        rows.push([label, fmt(v)]);
      }
    }
    const table = el("table");
    for (const [k, v] of rows) table.append(el("tr", {}, el("td", { text: k }), el("td", { text: v })));
    tip.replaceChildren(el("div", { class: "scope", text: node.scope }), table);
    tip.hidden = false;
    moveTip(event);
  }
  function moveTip(event) {
    const pad = 14;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = event.clientX + pad, y = event.clientY + pad;
    if (x + w > window.innerWidth - 4) x = Math.max(4, event.clientX - w - pad);
    if (y + h > window.innerHeight - 4) y = Math.max(4, event.clientY - h - pad);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }

  // ---------------------------------------------------------------- the breakdown tree
  let current = null; // the tree payload on display

  function headerRow(truth) {
    const cells = [el("div", { text: "node" }), el("div", { text: "type" }),
      el("div", { class: "num", text: "energy" }), el("div", { text: "share of the whole model" }),
      el("div", { class: "num", text: "% of parent" })];
    if (truth) cells.push(el("div", { class: "num", text: MEASURED }), el("div", { class: "num", text: "error" }));
    return el("div", { class: "trow head", role: "presentation" }, ...cells);
  }

  function nodeRow(node, depth, truth) {
    const hasKids = node.children.length > 0;
    const toggle = hasKids
      ? el("button", { type: "button", class: "toggle", "aria-label": "expand " + node.name, text: "▸" })
      : el("span", { class: "leafdot" });
    const name = el("div", { class: "name", style: "padding-left:" + depth * 18 + "px" }, toggle,
      el("span", { class: "dot " + node.kind }), el("span", { class: "label", text: node.name }));
    const share = el("div", { class: "share" },
      el("div", { class: "sharebar" },
        el("span", { style: "width:" + Math.max(0.3, Math.min(100, node.sm * 100)) + "%" })),
      el("span", { class: "pct", text: node.model }));
    const cells = [name, el("div", { class: "itype", text: node.itype }),
      el("div", { class: "num", text: node.energy }), share,
      el("div", { class: "num", text: node.parent })];
    if (truth) {
      cells.push(el("div", { class: "num", text: node.measured || "—" }),
        el("div", { class: "num " + errClass(node.err), text: node.errText || "—" }));
    }
    const row = el("div", { class: "trow node", role: "treeitem", "data-scope": node.scope,
      "data-depth": String(depth), "aria-expanded": hasKids ? "false" : null }, ...cells);
    row.addEventListener("mouseenter", (e) => showTip(node, e));
    row.addEventListener("mousemove", moveTip);
    row.addEventListener("mouseleave", hideTip);
    const wrap = el("div", { class: "branch" }, row);
    if (hasKids) {
      const kids = el("div", { class: "children", role: "group", hidden: true });
      wrap.append(kids);
      const open = (yes) => setOpen(node, depth, truth, row, toggle, kids, yes);
      toggle.addEventListener("click", (e) => { e.stopPropagation(); open(kids.hidden); });
      row.addEventListener("dblclick", () => open(kids.hidden));
      wrap._open = open;
    }
    return wrap;
  }

  // children rows are created on first opening, so big trees stay light
  function setOpen(node, depth, truth, row, toggle, kids, yes) {
    if (yes && !kids.childElementCount) {
      for (const child of node.children) kids.append(nodeRow(child, depth + 1, truth));
    }
    kids.hidden = !yes;
    toggle.textContent = yes ? "▾" : "▸";
    toggle.setAttribute("aria-label", (yes ? "collapse " : "expand ") + node.name);
    row.setAttribute("aria-expanded", yes ? "true" : "false");
  }

  function openTo(container, maxDepth) {
    for (const branch of container.querySelectorAll(":scope > .branch")) {
      const depth = Number(branch.firstChild.dataset.depth);
      if (branch._open) {
        branch._open(depth < maxDepth);
        if (depth < maxDepth) openTo(branch.querySelector(":scope > .children"), maxDepth);
      }
    }
  }

  function drawTree(t) {
    const box = document.getElementById("tree");
    box.classList.toggle("truth", t.hasTruth);
    box.replaceChildren(headerRow(t.hasTruth), nodeRow(t.root, 0, t.hasTruth));
    openTo(box, OPEN_DEPTH);
  }

  // ---------------------------------------------------------------- summary and side panels
  function stat(label, value, cls) {
    return el("div", { class: "stat" }, el("div", { class: "label", text: label }),
      el("div", { class: "value " + (cls || ""), text: value }));
  }

  function drawSummary(t) {
    const cards = [stat(t.source === "predicted" ? "predicted energy / call" : MEASURED + " energy / call", t.total)];
    if (t.source === "predicted" && t.measuredTotal) {
      cards.push(stat(MEASURED, t.measuredTotal));
      cards.push(stat("model-level error", t.error, errClass(parseFloat(t.error))));
    }
    cards.push(stat("batch × sequence", t.batchSize + " × " + t.seqLen, "small"));
    cards.push(stat("nodes / primitives", t.nodeCount + " / " + t.primitiveCount, "small"));
    if (t.energyFor) cards.push(stat("energy for", t.energyFor, "small"));
    const box = document.getElementById("summary");
    box.replaceChildren(...cards);
    for (const note of t.notes) box.append(el("div", { class: "note", text: "Note: " + note }));
  }

  function drawTypes(t) {
    const rows = t.types.map((s) => el("div", { class: "typebar", title: s.count + " primitives" },
      el("span", { class: "t", text: s.itype }),
      el("span", { class: "track" }, el("span", { class: "fill", style: "display:block;width:" + s.share * 100 + "%" })),
      el("span", { class: "num", text: s.shareText }),
      el("span", { class: "num e", text: s.energy })));
    document.getElementById("type-bars").replaceChildren(...rows,
      el("p", { class: "hint", text: "Shares of the summed energy of all primitives (they add up to 100 %)." }));
  }

  function hotspotTable(spots, truth) {
    const head = ["#", "scope", "type", "×", "energy", "% model"].concat(truth ? [MEASURED, "error"] : []);
    const table = el("table", { class: "data" }, el("thead", {}, el("tr", {},
      ...head.map((h, i) => el("th", { class: i >= 3 ? "num" : null, text: h })))));
    const body = el("tbody");
    spots.forEach((s, i) => {
      const cells = [String(i + 1), s.label, s.itype, String(s.count), s.energy, s.share];
      if (truth) cells.push(s.measured || "—", s.errText || "—");
      body.append(el("tr", {}, ...cells.map((c, j) => {
        const td = el("td", {
          class: j === 1 ? "scope" : j >= 3 ? "num" + (j === 7 ? " " + errClass(parseFloat(c)) : "") : null,
        });
        if (j === 1) td.append(...breakableScope(c)); else td.textContent = c;
        return td;
      })));
    });
    table.append(body);
    return table;
  }

  // a scope with line-break opportunities after its dots (never inside a name)
  function breakableScope(scope) {
    const parts = [];
    scope.split(".").forEach((part, i, all) => {
      parts.push(document.createTextNode(part + (i < all.length - 1 ? "." : "")));
      if (i < all.length - 1) parts.push(el("wbr"));
    });
    return parts;
  }

  function drawTop(t) {
    document.getElementById("top-primitives").replaceChildren(hotspotTable(t.topPrimitives, t.hasTruth));
    document.getElementById("top-modules").replaceChildren(hotspotTable(t.topModules, t.hasTruth));
  }

  function show(index) {
    current = DATA.trees[index];
    drawSummary(current);
    drawTree(current);
    drawTypes(current);
    drawTop(current);
  }

  function drawPicker() {
    const box = document.getElementById("picker");
    if (DATA.trees.length < 2) return;
    const select = el("select", { id: "tree-select", "aria-label": "tree" },
      ...DATA.trees.map((t, i) => el("option", { value: String(i), text: t.label })));
    select.addEventListener("change", () => show(Number(select.value)));
    box.append(el("label", { class: "hint", text: "Tree (" + DATA.trees.length + " in this file): " }), select);
  }

  document.getElementById("expand-all").addEventListener("click", () => openTo(document.getElementById("tree"), Infinity));
  document.getElementById("collapse-all").addEventListener("click", () => openTo(document.getElementById("tree"), 1));
  drawPicker();
  show(0);
  document.body.dataset.ready = "true";
})();
