// The attention view (viz/attention_view.py writes the data): blocks (encoder self, decoder self, cross),
// each a list of layers holding weights[head][query][key]. A weight of exactly 0 is a masked position.
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
let block = 0, layer = 0, heads = new Set();

function colour(h, n) { return `hsl(${Math.round((h * 360) / n)}, 70%, 42%)`; }
function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.append(el);
  return el;
}
function tokens(list, n) { return list || Array.from({ length: n }, (_, i) => String(i)); }
function current() { return D.blocks[block].layers[layer].weights; }  // [head][query][key]

function controls() {
  const b = D.blocks[block], nh = b.layers[0].weights.length;
  $("layer").innerHTML = b.layers.map((l, i) => `<option value="${i}" title="${l.path}">${i}</option>`).join("");
  $("layer").value = layer;
  $("heads").innerHTML = "";
  for (let h = 0; h < nh; h++) {
    const btn = document.createElement("button");
    btn.textContent = h;
    btn.dataset.head = h;
    btn.style.setProperty("--c", colour(h, nh));
    btn.className = heads.has(h) ? "on" : "";
    btn.onclick = () => { heads.has(h) ? heads.delete(h) : heads.add(h); draw(); };
    $("heads").append(btn);
  }
}

// ------------------------------------------------------------------ head view: two columns of tokens

function drawHeads() {
  const b = D.blocks[block], W = current(), nh = W.length, T = W[0].length, S = W[0][0].length;
  const rows = tokens(b.rows, T), cols = tokens(b.cols, S);
  const longest = Math.max(5, ...rows.concat(cols).map((t) => t.length));  // 5: the "query" heading
  const tw = 14 + 8 * longest, gap = 220, rh = 22, top = 24;
  const svg = $("head");
  svg.innerHTML = "";
  svg.setAttribute("width", 2 * tw + gap + 20);
  svg.setAttribute("height", top + rh * Math.max(T, S) + 10);
  svgEl("text", { x: tw, y: 14, "text-anchor": "end", fill: "#778" }, svg).textContent = "query";
  svgEl("text", { x: tw + gap, y: 14, fill: "#778" }, svg).textContent = "key";
  const lines = svgEl("g", { id: "lines" }, svg);
  const y = (i) => top + rh * i + rh / 2;
  const spread = Math.min(1.5, 16 / nh);  // each head's lines end a little apart, so the colours stay apart
  for (const h of [...heads].sort((a, c) => a - c))
    for (let i = 0; i < T; i++)
      for (let j = 0; j < S; j++) {
        const w = W[h][i][j], dy = (h - (nh - 1) / 2) * spread;
        if (w > 0) svgEl("line", { x1: tw + 6, y1: y(i) + dy, x2: tw + gap - 6, y2: y(j) + dy, stroke: colour(h, nh),
          "stroke-width": 2.5, "stroke-opacity": w, "data-head": h, "data-q": i, "data-k": j, "data-w": w }, lines);
      }
  const side = (list, isQuery) => list.forEach((t, i) => {
    const x = isQuery ? tw : tw + gap;
    const hit = svgEl("rect", { class: "hit", x: isQuery ? 0 : x - 4, y: top + rh * i, width: tw + 4, height: rh }, svg);
    const text = svgEl("text", { x, y: y(i) + 4, "text-anchor": isQuery ? "end" : "start", class: isQuery ? "q" : "k",
      "data-i": i }, svg);
    text.textContent = t;
    for (const el of [hit, text]) {
      el.addEventListener("mouseenter", () => focus(isQuery, i));
      el.addEventListener("mouseleave", () => focus(null));
    }
  });
  side(rows, true);
  side(cols, false);
}

function focus(isQuery, i) {  // only the hovered token's lines; the tokens it cannot see struck through
  const W = current(), shown = [...heads];
  for (const l of $("lines").children)
    l.style.display = isQuery === null || +l.dataset[isQuery ? "q" : "k"] === i ? "" : "none";
  for (const t of $("head").querySelectorAll("text.q, text.k")) {
    const j = +t.dataset.i, other = t.classList.contains(isQuery ? "k" : "q");
    const masked = isQuery !== null && other && shown.length > 0 &&
      shown.every((h) => (isQuery ? W[h][i][j] : W[h][j][i]) === 0);
    t.classList.toggle("masked", masked);
    t.classList.toggle("hover", isQuery !== null && !other && j === i);
  }
}

// ------------------------------------------------------------------ model view: layer x head small multiples

function drawGrid() {
  const b = D.blocks[block], nh = b.layers[0].weights.length, grid = $("grid");
  grid.innerHTML = "";
  grid.style.gridTemplateColumns = `3em repeat(${nh}, auto)`;
  grid.append(Object.assign(document.createElement("div"), { className: "axis", textContent: "layer" }));
  for (let h = 0; h < nh; h++)
    grid.append(Object.assign(document.createElement("div"), { className: "axis", textContent: `head ${h}` }));
  b.layers.forEach((l, li) => {
    grid.append(Object.assign(document.createElement("div"), { className: "axis", textContent: li, title: l.path }));
    l.weights.forEach((W, h) => {
      const T = W.length, S = W[0].length, cell = Math.max(3, Math.floor(64 / Math.max(T, S)));
      const svg = svgEl("svg", { class: "cell", width: cell * S, height: cell * T, "data-layer": li, "data-head": h });
      svg.classList.toggle("on", li === layer && heads.size === 1 && heads.has(h));
      svgEl("title", {}, svg).textContent = `${l.path}, head ${h}`;
      W.forEach((row, i) => row.forEach((w, j) => {
        const r = svgEl("rect", { x: j * cell, y: i * cell, width: cell, height: cell }, svg);
        if (w === 0) r.setAttribute("class", "masked");
        else r.setAttribute("fill", colour(h, nh)), r.setAttribute("fill-opacity", w);
      }));
      svg.addEventListener("click", () => { layer = li; heads = new Set([h]); draw(); });
      grid.append(svg);
    });
  });
}

function draw() {
  controls();
  drawHeads();
  drawGrid();
}

$("title").textContent = D.title;
$("block").innerHTML = D.blocks.map((b, i) => `<option value="${i}">${b.label}</option>`).join("");
$("block").onchange = () => { block = +$("block").value; layer = Math.min(layer, D.blocks[block].layers.length - 1); draw(); };
$("layer").onchange = () => { layer = +$("layer").value; draw(); };
$("all").onclick = () => { heads = new Set(D.blocks[block].layers[0].weights.map((_, h) => h)); draw(); };
heads = new Set(D.blocks[0].layers[0].weights.map((_, h) => h));
draw();
document.body.setAttribute("data-ready", "1");
