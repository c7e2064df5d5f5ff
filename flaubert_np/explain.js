// The explain page (flaubert_np/explain.py writes it): plain JavaScript drawing SVG and canvas
// from the JSON in <script id="data">. Nothing is fetched; the page works from file://.
//
// data = {model, pipeline, n_layers, n_heads,
//         a: {text, tokens, pieces, attentions[layer][head][query][key], shares[layer][token]},
//         b: the same or null,
//         pair: {cosine, layer_cosines[layer], matrices[layer][i][j]} or null}
// Layers of hidden states run 0..n_layers (0: the embeddings); attention layers 0..n_layers-1.
"use strict";

const data = JSON.parse(document.getElementById("data").textContent);
const SVG_NS = "http://www.w3.org/2000/svg";
const sentences = data.b ? [data.a, data.b] : [data.a];
const NAMES = ["A", "B"];
// what the attention view shows; changed only through the controls
const state = { sentence: 0, layer: 0, head: 0, view: "head" };

// -- small helpers --------------------------------------------------------------------------

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== "") node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== "") node.textContent = String(text);
  return node;
}

function fmt(x, digits = 4) {
  return Number(x).toPrecision(digits).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

function isSpecial(token) {
  return token.startsWith("<") && token.endsWith(">");
}

// Approximate text width (DejaVu Sans is ~0.6 em per character): enough to lay out labels.
function textWidth(s, size) {
  return 0.62 * size * s.length;
}

// A diverging colour map (ColorBrewer RdBu, reversed): blue < 0 < red, white-ish at 0.
const RDBU = [[33, 102, 172], [103, 169, 207], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [239, 138, 98], [178, 24, 43]];

function diverging(t) {  // t in [-1, 1]
  const x = (Math.max(-1, Math.min(1, t)) + 1) / 2 * (RDBU.length - 1);
  const i = Math.min(Math.floor(x), RDBU.length - 2);
  const f = x - i;
  const c = RDBU[i].map((v, k) => Math.round(v + f * (RDBU[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// The tooltip follows the mouse; keyboard users get the same text in live status lines.
const tip = document.getElementById("tip");
function showTip(text, x, y) {
  tip.textContent = text;
  tip.style.display = "block";
  tip.style.left = Math.min(x + 14, window.innerWidth - tip.offsetWidth - 8) + "px";
  tip.style.top = (y + 14) + "px";
}
function hideTip() { tip.style.display = "none"; }
function hoverTip(node, text) {
  node.addEventListener("mousemove", (e) => showTip(text, e.clientX, e.clientY));
  node.addEventListener("mouseleave", hideTip);
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v }, label)));
  select.value = String(value);
}

const range = (n) => Array.from({ length: n }, (_, i) => i);

// -- header: the sentences, their tokens, the cosine ------------------------------------------

function renderHeader() {
  document.getElementById("heading").textContent = data.b
    ? "Why are these two sentences similar?" : "How does the model read this sentence?";
  document.getElementById("model").textContent =
    `model: ${data.model || "(unnamed)"} · ${data.n_layers} layers × ${data.n_heads} heads · ` +
    `sentence vector: ${data.pipeline.join(" → ")}`;
  const box = document.getElementById("sentences");
  sentences.forEach((s, k) => {
    const line = el("div", { class: "sentence" });
    line.append(el("span", { class: "tag" }, NAMES[k]), el("span", { class: "text" }, s.text));
    const tokens = el("div", { class: "tokens", "data-sentence": NAMES[k] });
    s.tokens.forEach((t, i) => {
      const chip = el("span", { class: "token" + (isSpecial(t) ? " special" : "") }, t);
      chip.title = `${NAMES[k]}[${i}] ${s.pieces[i]}`;
      tokens.append(chip);
    });
    box.append(line, tokens);
  });
  if (data.pair) {
    const p = el("p", { class: "cosine" }, "cosine(A, B) = ");
    p.append(el("b", {}, fmt(data.pair.cosine)));
    box.append(p);
  }
}

// -- the attribution heatmap and its top pairs -------------------------------------------------

function renderPair() {
  const layer = Number(document.getElementById("pair-layer").value);
  const m = data.pair.matrices[layer];
  const ta = data.a.tokens, tb = data.b.tokens;
  const vmax = Math.max(1e-12, ...m.flat().map(Math.abs));
  const cell = Math.max(14, Math.min(26, Math.floor(520 / Math.max(ta.length, tb.length))));
  const font = 12;
  const left = Math.max(...ta.map((t) => textWidth(t, font))) + 10;
  const top = Math.max(...tb.map((t) => textWidth(t, font))) * 0.75 + 14;
  const width = left + tb.length * cell + 90, height = top + ta.length * cell + 10;
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": "token-pair attribution heatmap", "data-layer": layer });
  ta.forEach((t, i) => svg.append(svgEl("text", { class: "lab", "data-row": i, x: left - 6,
    y: top + (i + 0.5) * cell, "text-anchor": "end", "dominant-baseline": "central",
    "font-size": font }, t)));
  tb.forEach((t, j) => svg.append(svgEl("text", { class: "lab", "data-col": j,
    transform: `translate(${left + (j + 0.5) * cell},${top - 6}) rotate(-50)`,
    "dominant-baseline": "central", "font-size": font }, t)));
  m.forEach((row, i) => row.forEach((v, j) => {
    const rect = svgEl("rect", { class: "cell", x: left + j * cell, y: top + i * cell,
      width: cell, height: cell, fill: diverging(v / vmax), "data-i": i, "data-j": j });
    const text = `A ${ta[i]} × B ${tb[j]}: ${fmt(v)}`;
    rect.append(svgEl("title", {}, text));
    hoverTip(rect, text);
    rect.addEventListener("mouseenter", () => markLabels(svg, i, j));
    rect.addEventListener("mouseleave", () => markLabels(svg, -1, -1));
    svg.append(rect);
  }));
  svg.append(legend(left + tb.length * cell + 16, top, ta.length * cell, vmax));
  keyboardCells(svg, m, (i, j, v) => `A ${ta[i]} × B ${tb[j]}: ${fmt(v)}`);
  document.getElementById("heatmap").replaceChildren(svg);
  document.getElementById("heatmap-caption").textContent =
    `Rows: tokens of A; columns: tokens of B; red adds to the similarity, blue takes from it. ` +
    `Colour scale ±${fmt(vmax, 3)}. Hover a cell for its value (keyboard: Tab, then the arrows).`;
  renderTopPairs(m, layer);
  document.querySelectorAll("#curve circle").forEach((dot) =>
    dot.classList.toggle("current", Number(dot.dataset.layer) === layer));
}

// Bold the labels of row i and column j (-1: none), so that a cell's two tokens stand out.
function markLabels(svg, i, j) {
  svg.querySelectorAll(".lab").forEach((t) => t.classList.toggle("on",
    Number(t.dataset.row ?? -2) === i || Number(t.dataset.col ?? -2) === j));
}

// Keyboard access to a heatmap: Tab focuses it, the arrow keys move a highlighted cell, whose
// value is read out in #heatmap-status (a live region).
function keyboardCells(svg, m, describe) {
  const pos = { i: 0, j: 0 };
  const status = document.getElementById("heatmap-status");
  svg.setAttribute("tabindex", 0);
  const show = () => {
    svg.querySelectorAll(".cell.on").forEach((c) => c.classList.remove("on"));
    const cell = svg.querySelector(`.cell[data-i="${pos.i}"][data-j="${pos.j}"]`);
    cell.classList.add("on");
    markLabels(svg, pos.i, pos.j);
    status.textContent = describe(pos.i, pos.j, m[pos.i][pos.j]);
  };
  svg.addEventListener("focus", show);
  svg.addEventListener("blur", () => {
    svg.querySelectorAll(".cell.on").forEach((c) => c.classList.remove("on"));
    markLabels(svg, -1, -1);
  });
  svg.addEventListener("keydown", (e) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!(e.key in moves)) return;
    e.preventDefault();
    pos.i = Math.max(0, Math.min(m.length - 1, pos.i + moves[e.key][0]));
    pos.j = Math.max(0, Math.min(m[0].length - 1, pos.j + moves[e.key][1]));
    show();
  });
}

// A vertical colour bar from -vmax (bottom) to +vmax (top).
function legend(x, y, h, vmax) {
  const g = svgEl("g", { transform: `translate(${x},${y})` });
  const id = "legend-gradient";
  const grad = svgEl("linearGradient", { id, x1: 0, y1: 1, x2: 0, y2: 0 });
  range(11).forEach((k) => grad.append(svgEl("stop", { offset: k / 10,
    "stop-color": diverging(k / 5 - 1) })));
  const defs = svgEl("defs");
  defs.append(grad);
  g.append(defs);
  g.append(svgEl("rect", { width: 12, height: h, fill: `url(#${id})`, stroke: "#8b93a3" }));
  [-1, -0.5, 0, 0.5, 1].forEach((t) => {
    const ty = h * (1 - (t + 1) / 2);
    g.append(svgEl("line", { class: "axis", x1: 12, x2: 16, y1: ty, y2: ty }));
    g.append(svgEl("text", { class: "small", x: 19, y: ty, "dominant-baseline": "central" },
      fmt(t * vmax, 2)));
  });
  return g;
}

function renderTopPairs(m, layer) {
  const ta = data.a.tokens, tb = data.b.tokens;
  const pairs = m.flatMap((row, i) => row.map((v, j) => ({ i, j, v })));
  const byValue = [...pairs].sort((p, q) => q.v - p.v);
  const top = byValue.slice(0, 8), bottom = byValue.slice(-3).reverse().filter((p) => p.v < 0);
  const vmax = Math.max(1e-12, ...pairs.map((p) => Math.abs(p.v)));
  const table = document.getElementById("top-pairs");
  const head = el("tr");
  ["A", "B", "part of the cosine", ""].forEach((h) => head.append(el("th", {}, h)));
  table.replaceChildren(head);
  const addRow = (p) => {
    const tr = el("tr", { "data-i": p.i, "data-j": p.j });
    tr.append(el("td", {}, ta[p.i]), el("td", {}, tb[p.j]), el("td", { class: "num" }, p.v.toFixed(4)));
    const bar = el("span", { class: "bar" });
    bar.style.width = Math.round(90 * Math.abs(p.v) / vmax) + "px";
    bar.style.background = diverging(p.v / vmax);
    const td = el("td");
    td.append(bar);
    tr.append(td);
    table.append(tr);
  };
  top.forEach(addRow);
  if (bottom.length) {
    const sep = el("tr", { class: "sep" });
    sep.append(el("td", { colspan: 4 }, "most negative"));
    table.append(sep);
    bottom.forEach(addRow);
  }
  const where = layer === data.n_layers ? "" : ` (pooled at layer ${layer})`;
  // the total comes from Python (float64), not from the rounded cells
  document.getElementById("pair-total").textContent =
    `All ${pairs.length} pairs add up to cosine(A, B)${where} = ` +
    `${fmt(data.pair.layer_cosines[layer])}; the top ${top.length} give ` +
    `${fmt(top.reduce((s, p) => s + p.v, 0))}, the negative pairs take some of it back.`;
}

// -- layer by layer: the similarity curve and the token shares ---------------------------------

function renderCurve() {
  const ys = data.pair.layer_cosines;
  const w = 460, h = 230, left = 46, right = 16, top = 14, bottom = 36;
  const lo = Math.min(0, ...ys), hi = Math.max(1, ...ys);
  const sx = (k) => left + k * (w - left - right) / Math.max(1, ys.length - 1);
  const sy = (v) => top + (hi - v) * (h - top - bottom) / (hi - lo);
  const svg = svgEl("svg", { width: w, height: h, role: "img",
    "aria-label": "cosine per layer" });
  for (let t = Math.ceil(lo * 4) / 4; t <= hi + 1e-9; t += 0.25) {
    svg.append(svgEl("line", { class: "grid", x1: left, x2: w - right, y1: sy(t), y2: sy(t) }));
    svg.append(svgEl("text", { class: "small", x: left - 6, y: sy(t), "text-anchor": "end",
      "dominant-baseline": "central" }, fmt(t, 2)));
  }
  ys.forEach((_, k) => svg.append(svgEl("text", { class: "small", x: sx(k), y: h - bottom + 16,
    "text-anchor": "middle" }, String(k))));
  svg.append(svgEl("text", { class: "small", x: (left + w - right) / 2, y: h - 4,
    "text-anchor": "middle" }, "layer (0 = embeddings)"));
  svg.append(svgEl("polyline", { fill: "none", stroke: "#2458b3", "stroke-width": 2,
    points: ys.map((v, k) => `${sx(k)},${sy(v)}`).join(" ") }));
  ys.forEach((v, k) => {
    const dot = svgEl("circle", { cx: sx(k), cy: sy(v), r: 4.5, fill: "#2458b3",
      "data-layer": k });
    const text = `layer ${k}: cosine ${fmt(v)} (click: split it into pairs)`;
    dot.append(svgEl("title", {}, text));
    hoverTip(dot, text);
    // the mouse's shortcut for the "Pooled at" list, which keyboard users have
    dot.addEventListener("click", () => setControl("pair-layer", k));
    svg.append(dot);
  });
  document.getElementById("curve").replaceChildren(svg);
}

function renderShares() {
  const box = document.getElementById("shares");
  box.replaceChildren();
  const font = 11;
  const longest = Math.max(...sentences.flatMap((s) => s.tokens.map((t) => textWidth(t, font))));
  const top = longest * 0.75 + 22;  // the same for both sentences, so that their rows line up
  sentences.forEach((s, k) => {
    const cell = Math.max(14, Math.min(24, Math.floor(560 / s.tokens.length)));
    const left = 58;
    const rows = s.shares.length, cols = s.tokens.length;
    const vmax = Math.max(1e-12, ...s.shares.flat().map(Math.abs));
    const w = left + cols * cell + 40, h = top + rows * cell + 6;
    const svg = svgEl("svg", { width: w, height: h, role: "img",
      "aria-label": `token shares of sentence ${NAMES[k]} per layer` });
    svg.append(svgEl("text", { x: 0, y: 12, "font-weight": "bold", "font-size": 12 },
      sentences.length > 1 ? `Sentence ${NAMES[k]}` : "Sentence"));
    s.tokens.forEach((t, j) => svg.append(svgEl("text", { "font-size": font,
      transform: `translate(${left + (j + 0.5) * cell},${top - 5}) rotate(-50)` }, t)));
    s.shares.forEach((row, layer) => {
      svg.append(svgEl("text", { class: "small", x: left - 6, y: top + (layer + 0.5) * cell,
        "text-anchor": "end", "dominant-baseline": "central" }, `layer ${layer}`));
      row.forEach((v, j) => {
        const rect = svgEl("rect", { class: "cell", x: left + j * cell, y: top + layer * cell,
          width: cell, height: cell, fill: diverging(v / vmax) });
        const text = `${NAMES[k]} ${s.tokens[j]}, layer ${layer}: share ${fmt(v)}`;
        rect.append(svgEl("title", {}, text));
        hoverTip(rect, text);
        svg.append(rect);
      });
    });
    box.append(svg);
  });
}

// -- attention: head view (one head, lines between tokens) and model view (every head) --------

const HEAD_VIEW_HELP = document.getElementById("att-help").textContent;

// Lines from each query (left) to each key (right), opacity = weight: bertviz's head view.
function renderHeadView() {
  const s = sentences[state.sentence];
  const weights = s.attentions[state.layer][state.head];
  const font = 13, rowH = 21, gap = 200;
  const labelW = Math.max(...s.tokens.map((t) => textWidth(t, font))) + 16;
  const xl = labelW, xr = labelW + gap, w = xr + Math.max(labelW, 140), h = s.tokens.length * rowH + 34;
  const y = (i) => 30 + (i + 0.5) * rowH;
  const svg = svgEl("svg", { width: w, height: h, id: "head-svg",
    "data-sentence": NAMES[state.sentence], "data-layer": state.layer, "data-head": state.head,
    role: "img", "aria-label": `attention of layer ${state.layer}, head ${state.head}` });
  svg.append(svgEl("text", { class: "small", x: xl - 8, y: 12, "text-anchor": "end" }, "query"));
  svg.append(svgEl("text", { class: "small", x: xr + 8, y: 12 }, "key (attended to)"));
  const colour = headColour(state.head);
  const lines = svgEl("g", { id: "head-lines" });
  weights.forEach((row, q) => row.forEach((v, k) => {
    lines.append(svgEl("line", { class: "att", x1: xl, y1: y(q), x2: xr, y2: y(k),
      stroke: colour, "stroke-width": 2.5, "stroke-opacity": v.toFixed(3), "data-q": q,
      "data-k": k, "data-w": v }));
  }));
  svg.append(lines);
  // tokens: hovering or focusing one keeps only its lines
  const highlight = (side, i) => {
    for (const line of lines.children) {
      const mine = Number(line.dataset[side]) === i;
      line.setAttribute("stroke-opacity", mine ? Number(line.dataset.w).toFixed(3) : 0);
    }
    const row = side === "q" ? weights[i] : weights.map((r) => r[i]);
    const best = row.map((v, j) => [v, j]).sort((p, q) => q[0] - p[0]).slice(0, 3);
    const what = side === "q" ? `${s.tokens[i]} attends to` : `attending to ${s.tokens[i]}:`;
    document.getElementById("att-help").textContent = `${what} ` +
      best.map(([v, j]) => `${s.tokens[j]} (${fmt(v, 3)})`).join(", ");
  };
  const reset = () => {
    for (const line of lines.children) {
      line.setAttribute("stroke-opacity", Number(line.dataset.w).toFixed(3));
    }
    document.getElementById("att-help").textContent = HEAD_VIEW_HELP;
  };
  s.tokens.forEach((t, i) => {
    for (const [side, x, anchor] of [["q", xl - 8, "end"], ["k", xr + 8, "start"]]) {
      const g = svgEl("g", { class: "tok", tabindex: 0, role: "button", "data-side": side,
        "data-index": i, "aria-label": `${side === "q" ? "query" : "key"} ${t}` });
      const tw = textWidth(t, font) + 8;
      g.append(svgEl("rect", { x: anchor === "end" ? x - tw + 4 : x - 4, y: y(i) - rowH / 2 + 1,
        width: tw, height: rowH - 2, rx: 3 }));
      g.append(svgEl("text", { x, y: y(i), "text-anchor": anchor, "dominant-baseline": "central",
        "font-size": font }, t));
      const on = () => highlight(side, i);
      g.addEventListener("mouseenter", on);
      g.addEventListener("focus", on);
      g.addEventListener("mouseleave", reset);
      g.addEventListener("blur", reset);
      svg.append(g);
    }
  });
  document.getElementById("head-view").replaceChildren(svg);
}

// One colour per head, as bertviz does, so that thumbnails of a layer are told apart.
function headColour(head) {
  const hue = Math.round((head * 360) / Math.max(1, data.n_heads)) % 360;
  return `hsl(${(hue + 215) % 360}, 65%, 42%)`;
}

// Every layer x head as a small canvas (cheap: a base model has 144 of them); one click opens it.
function renderModelView() {
  const s = sentences[state.sentence];
  const n = s.tokens.length;
  const box = document.getElementById("model-view");
  const size = Math.max(44, Math.min(72, Math.floor(1100 / (data.n_heads + 1)) - 8));
  box.style.gridTemplateColumns = `40px repeat(${data.n_heads}, ${size + 8}px)`;
  box.replaceChildren(el("div", { class: "corner" }, "layer \\ head"));
  range(data.n_heads).forEach((h) => box.append(el("div", { class: "colhead" }, String(h))));
  range(data.n_layers).forEach((layer) => {
    box.append(el("div", { class: "rowhead" }, String(layer)));
    range(data.n_heads).forEach((head) => {
      const current = layer === state.layer && head === state.head;
      const button = el("button", { type: "button", class: "thumb" + (current ? " current" : ""),
        "data-layer": layer, "data-head": head,
        "aria-label": `open layer ${layer}, head ${head}`, title: `layer ${layer}, head ${head}` });
      const canvas = el("canvas", { width: size, height: size });
      const ctx = canvas.getContext("2d");
      const y = (i) => (i + 0.5) * size / n;
      ctx.strokeStyle = headColour(head);
      ctx.lineWidth = 1;
      s.attentions[layer][head].forEach((row, q) => row.forEach((v, k) => {
        ctx.globalAlpha = v;
        ctx.beginPath();
        ctx.moveTo(4, y(q));
        ctx.lineTo(size - 4, y(k));
        ctx.stroke();
      }));
      button.append(canvas);
      button.addEventListener("click", () => {
        setControl("att-layer", layer);
        setControl("att-head", head);
        setView("head");
      });
      box.append(button);
    });
  });
}

function setControl(id, value) {
  const select = document.getElementById(id);
  select.value = String(value);
  select.dispatchEvent(new Event("change"));
}

function setView(view) {
  state.view = view;
  document.getElementById("view-head").setAttribute("aria-pressed", view === "head");
  document.getElementById("view-model").setAttribute("aria-pressed", view === "model");
  document.getElementById("head-view").hidden = view !== "head";
  document.getElementById("att-help").hidden = view !== "head";
  document.getElementById("model-view").hidden = view !== "model";
  if (view === "model") renderModelView();
}

function renderAttention() {
  renderHeadView();
  if (state.view === "model") renderModelView();
}

// -- wiring -----------------------------------------------------------------------------------

function setup() {
  renderHeader();
  const layerNames = range(data.n_layers + 1).map((k) =>
    [k, k === 0 ? "layer 0 (embeddings)" : k === data.n_layers ? `layer ${k} (last)` : `layer ${k}`]);
  if (data.pair) {
    document.getElementById("pair-section").hidden = false;
    document.getElementById("curve-panel").hidden = false;
    const pairLayer = document.getElementById("pair-layer");
    fillSelect(pairLayer, layerNames, data.n_layers);
    pairLayer.addEventListener("change", renderPair);
    renderCurve();
    renderPair();
  } else {
    document.querySelector("#layers-section h2").textContent = "Token shares, layer by layer";
  }
  document.getElementById("layers-help").textContent = data.pair
    ? "Similarity is not decided at the last layer only: pooling the same tokens at earlier " +
      "hidden states gives the curve below; the shares show which tokens carry each sentence vector."
    : "Which tokens carry the sentence vector at each layer.";
  renderShares();

  const pick = document.getElementById("att-sentence");
  fillSelect(pick, sentences.map((s, k) => [k, `${NAMES[k]}: ${s.text}`]), 0);
  document.getElementById("sentence-label").hidden = sentences.length < 2;
  fillSelect(document.getElementById("att-layer"), range(data.n_layers).map((k) => [k, k]), 0);
  fillSelect(document.getElementById("att-head"), range(data.n_heads).map((k) => [k, k]), 0);
  for (const [id, key] of [["att-sentence", "sentence"], ["att-layer", "layer"],
    ["att-head", "head"]]) {
    document.getElementById(id).addEventListener("change", (e) => {
      state[key] = Number(e.target.value);
      renderAttention();
    });
  }
  document.getElementById("view-head").addEventListener("click", () => setView("head"));
  document.getElementById("view-model").addEventListener("click", () => setView("model"));
  renderHeadView();
}

// #selftest (tests/test_explain.py, in headless Chromium): drive the real controls and record
// what the head view draws after each change, in a hidden pre#selftest, for --dump-dom to show.
function selftest() {
  const drawn = () => {
    const svg = document.getElementById("head-svg");
    const lines = [...svg.querySelectorAll("line.att")].map((l) => l.getAttribute("stroke-opacity"));
    return { layer: svg.dataset.layer, head: svg.dataset.head, opacities: lines.join(" ") };
  };
  const steps = [["start", drawn()]];
  setControl("att-layer", data.n_layers - 1);
  steps.push(["layer", drawn()]);
  setControl("att-head", data.n_heads - 1);
  steps.push(["head", drawn()]);
  document.getElementById("view-model").click();
  const thumbs = document.querySelectorAll("#model-view button.thumb").length;
  document.querySelector('#model-view button[data-layer="0"][data-head="1"]').click();
  steps.push(["thumbnail", drawn()]);
  const out = el("pre", { id: "selftest", hidden: "" },
    JSON.stringify({ steps, thumbnails: thumbs, view: state.view }));
  document.body.append(out);
}

setup();
if (location.hash === "#selftest") selftest();
