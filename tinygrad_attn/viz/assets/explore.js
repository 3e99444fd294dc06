// The graph explorer (viz/explore.py writes the data): one Graphviz picture per state, a state being
// one module call drawn open with the calls around it. Words used here:
//   node   a graph node, drawn as <g class="node"> named n<i>;  box  a closed module, named b<frame key>
//   frame  an open module's cluster;  state  the key of the innermost open frame
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const view = $("view"), insp = $("inspector"), flowBox = $("flow"), slider = $("step");
let state = null, svg = null, full = null, vb = null, els = {}, boxOf = {}, selected = null;
const unpacked = {};

function fmt(x) {
  if (typeof x !== "number") return String(x);
  if (Number.isSafeInteger(x)) return String(x);  // token ids exactly: 13523, not 1.352e+4
  return x === 0 || (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e5) ? String(+x.toPrecision(4)) : x.toExponential(3);
}
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

async function svgText(key) {  // each picture is gzip + base64 in the page; unpacked once, when first shown
  if (!(key in unpacked)) {
    const bytes = Uint8Array.from(atob(D.states[key].svgz), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    unpacked[key] = await new Response(stream).text();
  }
  return unpacked[key];
}

// ------------------------------------------------------------------ states: open and close modules

async function show(key, focusName) {
  view.innerHTML = await svgText(key);
  svg = view.querySelector("svg");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  const b = svg.viewBox.baseVal;
  full = { x: b.x, y: b.y, w: b.width, h: b.height };
  state = key;
  annotate();
  crumbs();
  const focus = focusName && els[focusName];
  focus ? fitTo(focus) : fit();
  if (selected !== null && locate(selected)) locate(selected).classList.add("sel");
  applyStep();
}

function annotate() {  // data-* attributes from the graph's records, so the page and its tests can read them
  els = {};
  boxOf = {};
  for (const [name, frames] of Object.entries(D.states[state].boxes)) for (const f of frames) boxOf[f] = name;
  for (const g of svg.querySelectorAll("g.node, g.cluster, g.edge")) {
    const t = g.querySelector("title");
    const name = t.textContent;
    t.remove();  // else the browser shows the DOT name as a tooltip
    if (g.classList.contains("edge")) {
      [g.dataset.from, g.dataset.to] = name.split("->");
    } else if (g.classList.contains("cluster")) {
      const key = name.slice("cluster_".length);
      Object.assign(g.dataset, { module: key, path: D.frames[key].path, op: "module" });
      els["cluster_" + key] = g;
    } else if (name[0] === "b") {
      const key = name.slice(1);
      Object.assign(g.dataset, { module: key, path: D.frames[key].path, op: "module" });
      g.classList.add("box");
      els[name] = g;
    } else if (name[0] === "n") {
      const i = +name.slice(1), n = D.nodes[i];
      const path = n.kind === "op" ? (D.frames[n.module] || { path: "" }).path : n.name;
      Object.assign(g.dataset, { node: i, op: n.op || n.kind, path });
      els[name] = g;
    }
  }
}

function locate(i) {  // the drawn element holding node i: itself, or the box of its innermost closed module
  if (els["n" + i]) return els["n" + i];
  const chain = D.nodes[i].chain;
  for (let k = chain.length - 1; k >= 0; k--) if (boxOf[chain[k]]) return els[boxOf[chain[k]]];
  return null;
}

function crumbs() {
  const nav = $("crumbs");
  nav.innerHTML = "";
  const open = D.states[state].open;
  const keys = open.length ? open : [state];
  keys.forEach((k, j) => {
    if (j) nav.append(Object.assign(document.createElement("span"), { textContent: " › " }));
    const b = Object.assign(document.createElement("button"), { textContent: D.frames[k] ? D.frames[k].label : D.title });
    b.onclick = () => { if (k !== state) show(k, "cluster_" + k); };
    nav.append(b);
  });
}

function closeFrame(key) {  // clicking an open module's frame shows the state of the module around it
  const open = D.states[state].open, j = open.indexOf(key);
  const parent = j > 0 ? open[j - 1] : "" in D.states ? "" : null;
  if (parent !== null) show(parent, "b" + key);
}

// ------------------------------------------------------------------ zoom and pan

function setView(x, y, w, h) {
  vb = { x, y, w, h };
  svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
}
function fit() { setView(full.x, full.y, full.w, full.h); }
function toUser(cx, cy) { return new DOMPoint(cx, cy).matrixTransform(svg.getScreenCTM().inverse()); }
function fitTo(el) {  // the element's box, padded, never magnified beyond 1.5x
  fit();
  const r = el.getBoundingClientRect(), a = toUser(r.left, r.top), b = toUser(r.right, r.bottom);
  const pad = 30, v = view.getBoundingClientRect();
  const w = Math.max(b.x - a.x + 2 * pad, v.width / 1.5), h = Math.max(b.y - a.y + 2 * pad, v.height / 1.5);
  setView((a.x + b.x - w) / 2, (a.y + b.y - h) / 2, w, h);
}
view.addEventListener("wheel", (ev) => {
  ev.preventDefault();
  const p = toUser(ev.clientX, ev.clientY), f = Math.exp(ev.deltaY * 0.0015);
  setView(p.x - (p.x - vb.x) * f, p.y - (p.y - vb.y) * f, vb.w * f, vb.h * f);
}, { passive: false });
let drag = null;
view.addEventListener("pointerdown", (ev) => { drag = { x: ev.clientX, y: ev.clientY, moved: false }; });
view.addEventListener("pointermove", (ev) => {
  if (!drag) return;
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) < 4) return;
  drag.moved = true;
  view.classList.add("dragging");
  const s = 1 / svg.getScreenCTM().a;
  setView(vb.x - dx * s, vb.y - dy * s, vb.w, vb.h);
  drag.x = ev.clientX;
  drag.y = ev.clientY;
});
window.addEventListener("pointerup", () => { view.classList.remove("dragging"); setTimeout(() => { drag = null; }); });
$("fit").onclick = () => fit();
function reveal(el) {  // pan (same zoom) to centre an element that is outside the window
  const r = el.getBoundingClientRect(), v = view.getBoundingClientRect();
  if (r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom) return;
  const c = toUser((r.left + r.right) / 2, (r.top + r.bottom) / 2), m = toUser((v.left + v.right) / 2, (v.top + v.bottom) / 2);
  setView(vb.x + c.x - m.x, vb.y + c.y - m.y, vb.w, vb.h);
}

view.addEventListener("click", (ev) => {
  if (drag && drag.moved) return;
  const g = ev.target.closest("g.node, g.cluster");
  if (!g) return;
  if (g.classList.contains("cluster")) closeFrame(g.dataset.module);
  else if (g.dataset.module) { inspectModule(g.dataset.module); show(g.dataset.module, "cluster_" + g.dataset.module); }
  else select(+g.dataset.node);
});

// ------------------------------------------------------------------ the inspector

function statsRows(label, s, field) {
  if (!s || s.min === undefined) return "";
  let rows = `<tr><th>${label}</th><td>min <span data-field="${field}-min">${fmt(s.min)}</span> ` +
    `mean <span data-field="${field}-mean">${fmt(s.mean)}</span> max <span data-field="${field}-max">${fmt(s.max)}</span></td></tr>`;
  if (s.values) rows += `<tr><th></th><td data-field="${field}-values">[${s.values.map(fmt).join(", ")}]</td></tr>`;
  return rows;
}

function select(i) {
  for (const el of svg.querySelectorAll(".sel")) el.classList.remove("sel");
  selected = i;
  const el = locate(i);
  if (el) el.classList.add("sel");
  const n = D.nodes[i];
  const doc = n.op && D.docs[n.op] ? `ops.${n.op}: ${D.docs[n.op]}` : n.op ? n.op : "";
  const module = n.module ? D.frames[n.module].path || D.frames[n.module].label : "(top level)";
  insp.innerHTML = `<h2 data-field="title">${esc(n.op || n.name)}</h2><table>` +
    `<tr><th>kind</th><td data-field="kind">${esc(n.kind)}</td></tr>` +
    `<tr><th>module</th><td data-field="module">${esc(module)}</td></tr>` +
    (D.scalar ? "" : `<tr><th>shape</th><td data-field="shape">(${n.shape.join(", ")}${n.shape.length === 1 ? "," : ""})</td></tr>` +
      `<tr><th>dtype</th><td data-field="dtype">${esc(n.dtype)}</td></tr>`) +
    statsRows("value", n.data, "data") +
    (n.grad ? statsRows("gradient", n.grad, "grad") : `<tr><th>gradient</th><td data-field="grad">none kept</td></tr>`) +
    (doc ? `<tr><th>primitive</th><td data-field="doc">${esc(doc)}</td></tr>` : "") + "</table>";
}

function inspectModule(key) {
  const f = D.frames[key];
  insp.innerHTML = `<h2 data-field="title">${esc(f.label)}</h2><table>` +
    `<tr><th>module</th><td data-field="module">${esc(f.path || "(root)")}</td></tr>` +
    `<tr><th>class</th><td>${esc(f.cls)}</td></tr><tr><th>parameters</th><td>${f.params.toLocaleString()}</td></tr></table>`;
}

// ------------------------------------------------------------------ stepping through backward or forward

function order() { return D[$("mode").value]; }
function applyStep() {
  if (!svg) return;
  for (const el of svg.querySelectorAll(".lit, .done, .flow")) el.classList.remove("lit", "done", "flow");
  const seq = order(), k = +slider.value;
  slider.max = seq.length;
  flowBox.innerHTML = "";
  if (!k) { $("stepinfo").textContent = `${seq.length} steps`; return; }
  for (let j = 0; j < k - 1; j++) { const el = locate(seq[j]); if (el) el.classList.add("done"); }
  const i = seq[k - 1], el = locate(i), n = D.nodes[i], back = $("mode").value === "backward";
  if (el) { el.classList.remove("done"); el.classList.add("lit"); reveal(el); }
  $("stepinfo").textContent = `step ${k}/${seq.length}: ${n.op || n.name}`;
  let rows = "";
  for (const p of D.parents[i]) {
    const a = locate(p), s = back ? D.edges[`${p},${i}`] : D.nodes[p].data;
    if (back && !s && !D.nodes[p].grad) continue;  // no gradient flows to an input such as target ids
    if (a && el && a !== el) {
      const an = Object.keys(els).find((name) => els[name] === a), bn = Object.keys(els).find((name) => els[name] === el);
      for (const e of svg.querySelectorAll("g.edge")) if (e.dataset.from === an && e.dataset.to === bn) e.classList.add("flow");
    }
    const who = esc(D.nodes[p].op || D.nodes[p].name);
    rows += s ? `<tr><th>${who}</th><td>min ${fmt(s.min)} mean ${fmt(s.mean)} max ${fmt(s.max)}</td></tr>` : "";
  }
  const head = back ? `gradient from ${esc(n.op || n.name)} to each input` : `values into ${esc(n.op || n.name)}`;
  flowBox.innerHTML = rows ? `<h2>${head}</h2><table>${rows}</table>` : D.parents[i].length && back
    ? `<p class="hint">Per-edge gradients need the graph: call retain_grads(loss) and backward(retain_graph=True).</p>` : "";
}
slider.oninput = applyStep;
$("mode").onchange = () => { slider.value = 0; applyStep(); };
$("prev").onclick = () => { slider.value = Math.max(0, +slider.value - 1); applyStep(); };
$("next").onclick = () => { slider.value = Math.min(order().length, +slider.value + 1); applyStep(); };

// ------------------------------------------------------------------ search

const names = new Set(Object.keys(D.frames).filter((k) => k !== "root"));
for (const n of D.nodes) if (n.kind !== "op" && n.name) names.add(n.name);
$("names").innerHTML = [...names].map((k) => `<option value="${esc(k)}">`).join("");
$("search").addEventListener("change", () => {
  const q = $("search").value.trim();
  if (!q) return;
  const frame = Object.keys(D.frames).find((k) => k === q || D.frames[k].path === q) ||
    Object.keys(D.frames).find((k) => D.frames[k].path.endsWith(q) || k.includes(q));
  const i = D.nodes.findIndex((n) => n.kind !== "op" && n.name === q);
  if (i >= 0) {
    const chain = D.nodes[i].chain, key = chain.length ? chain[chain.length - 1] : D.start;
    show(key, "n" + i).then(() => { select(i); if (els["n" + i]) els["n" + i].classList.add("found"); });
  } else if (frame) {
    show(frame, "cluster_" + frame).then(() => inspectModule(frame));
  }
});

if (D.error) {
  document.body.innerHTML = `<p class="error">${esc(D.error)}</p>`;
} else {
  document.title = D.title;
  show(D.start).then(() => document.body.setAttribute("data-ready", "1"));
}
