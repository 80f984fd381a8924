/* The lab's other views: the chains over time (one bar per token from its first to its last
frame, synced with the player), all frames as small multiples, and the threshold histograms
with the keep-ratio curve ("you are here"). Each draws only when shown. */
import { app, isShown } from "./app.js";
import { chainColour, drawFrame, legendHTML, setHTML, sizeColour, sizeLevel, widthOf } from "./draw.js";
import { merge, tokensFrom } from "./merge.js";

function sizeCanvas(c, w, h) {
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    c.style.width = `${w}px`; c.style.height = `${h}px`;
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** A view's render that draws now when `el` is on the screen and otherwise when it
 * scrolls into view: on a phone the plots below the fold cost a slider move nothing. Until the
 * first IntersectionObserver report it draws whenever `el` is displayed. */
function whenOnScreen(el, draw) {
  let onScreen = null, stale = false;
  new IntersectionObserver((entries) => {
    onScreen = entries[entries.length - 1].isIntersecting;
    if (onScreen && stale) { stale = false; draw(); }
  }).observe(el);
  return () => {
    if (onScreen === false || (onScreen === null && !isShown(el))) { stale = true; return; }
    stale = false;
    draw();
  };
}

// --- chains over time --------------------------------------------------------------------------
export function mountChains(panel) {
  panel.innerHTML = `<div class="sttm-plot-note">Each bar is one token, from the first to the last frame it covers (y: where its box sits, row by row). Long bars: parts merged across frames; the orange bars on top: new tokens per frame. Hover a bar to find its token on the map; click to inspect it.</div>
    <div class="sttm-chains-wrap"><canvas class="sttm-chains"></canvas><div class="sttm-tip"></div></div><div class="sttm-legend"></div>`;
  const canvas = panel.querySelector("canvas"), tip = panel.querySelector(".sttm-tip");
  const state = { key: "", layout: null };
  canvas.addEventListener("mousemove", (e) => {
    const hit = chainAt(app, state, canvas, e);
    if (!hit) { tip.style.display = "none"; if (app.view.hover !== -1) app.setView({ hover: -1 }); return; }
    const tk = app.tokens;
    tip.textContent = `token ${hit.token}: frames ${tk.first[hit.token] + 1}–${tk.last[hit.token] + 1}, ${tk.numPatches[hit.token]} patches`;
    tip.style.display = "block";
    const r = canvas.getBoundingClientRect();
    tip.style.left = `${Math.min(e.clientX - r.left + 12, r.width - 200)}px`;
    tip.style.top = `${e.clientY - r.top + 12}px`;
    if (hit.token !== app.view.hover) app.setView({ hover: hit.token, frame: clampFrame(app, app.view.frame, hit.token) });
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; if (app.view.hover !== -1) app.setView({ hover: -1 }); });
  canvas.addEventListener("click", (e) => {
    const hit = chainAt(app, state, canvas, e);
    if (hit) {
      const tk = app.tokens, b = tk.tokenBoxes.subarray(5 * hit.token, 5 * hit.token + 5);
      app.stopPlaying();
      app.setView({ selected: { t: b[0], y: b[1], x: b[2] }, frame: b[0] });
    } else if (state.layout) {
      const r = canvas.getBoundingClientRect(), L = state.layout;
      const f = Math.round((e.clientX - r.left - L.left) / L.dx);
      if (f >= 0 && f < app.tokens.T) { app.stopPlaying(); app.setView({ frame: f }); }
    }
  });
  app.register({ render: whenOnScreen(panel, () => drawChains(app, panel, canvas, state)) });
}

function clampFrame(app, frame, token) {
  const tk = app.tokens;
  return Math.max(tk.first[token], Math.min(tk.last[token], frame));
}

function tokenY(tk, n) {
  const b = tk.tokenBoxes;
  const cy = (b[5 * n + 1] + b[5 * n + 3] - 1) / 2, cx = (b[5 * n + 2] + b[5 * n + 4] - 1) / 2;
  return cy * tk.W + cx;
}

function drawChains(app, panel, canvas, state) {
  const tk = app.tokens;
  const w = Math.max(300, widthOf(panel) - 4), h = 230;
  const ctx = sizeCanvas(canvas, w, h);
  ctx.clearRect(0, 0, w, h);
  if (!tk) return;
  const T = tk.T, HW = tk.H * tk.W;
  const L = state.layout = { left: 46, top: 40, right: 10, bottom: 22 };
  L.dx = (w - L.left - L.right) / T;
  L.dy = (h - L.top - L.bottom) / HW;
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#666";
  // new tokens per frame, as bars above the chains
  const maxNew = Math.max(1, ...tk.newPerFrame);
  for (let t = 0; t < T; t++) {
    const bh = (tk.newPerFrame[t] / maxNew) * (L.top - 16);
    ctx.fillStyle = "#ff7f00";
    ctx.fillRect(L.left + t * L.dx + L.dx * 0.2, L.top - 4 - bh, L.dx * 0.6, bh);
  }
  ctx.fillStyle = "#666";
  ctx.fillText(`new tokens per frame (max ${maxNew})`, L.left, 10);
  // the chains, coarse first so fine ones stay on top
  const area = (n) => (tk.tokenBoxes[5 * n + 3] - tk.tokenBoxes[5 * n + 1]) * (tk.tokenBoxes[5 * n + 4] - tk.tokenBoxes[5 * n + 2]);
  if (state.tokens !== tk) {
    state.tokens = tk;
    state.order = Array.from({ length: tk.numTokens }, (_, n) => n).sort((a, b) => area(b) - area(a));
    state.areas = state.order.map(area);
  }
  for (const n of state.order) {
    const y = L.top + tokenY(tk, n) * L.dy + L.dy / 2;
    const a = area(n);
    ctx.strokeStyle = app.view.colourBy === "chain" ? chainColour(n) : sizeColour(a);
    ctx.lineWidth = Math.min(6, 1 + sizeLevel(a) * 0.6);
    ctx.beginPath();
    ctx.moveTo(L.left + tk.first[n] * L.dx + 1, y);
    ctx.lineTo(L.left + (tk.last[n] + 1) * L.dx - 1, y);
    ctx.stroke();
  }
  for (const [id, colour] of [[app.view.hover, "#d4a800"], [app.selectedToken(), "#000"]]) {
    if (id === undefined || id < 0) continue;
    const y = L.top + tokenY(tk, id) * L.dy + L.dy / 2;
    ctx.strokeStyle = colour; ctx.lineWidth = 3;
    ctx.strokeRect(L.left + tk.first[id] * L.dx, y - 4, (tk.last[id] - tk.first[id] + 1) * L.dx, 8);
  }
  // the current frame
  ctx.fillStyle = "rgba(0,120,255,0.12)";
  ctx.fillRect(L.left + app.view.frame * L.dx, L.top, L.dx, h - L.top - L.bottom);
  ctx.fillStyle = "#444";
  ctx.textAlign = "center";
  const every = Math.ceil(T / 16);
  for (let t = 0; t < T; t += every) ctx.fillText(String(t + 1), L.left + (t + 0.5) * L.dx, h - 8);
  ctx.textAlign = "left";
  ctx.fillText("↓ where", 2, L.top + 10); ctx.fillText("in the", 2, L.top + 22); ctx.fillText("frame", 2, L.top + 34);
  ctx.textAlign = "right";
  ctx.fillText("frame →", w - L.right, 10);
  ctx.textAlign = "left";
  canvas.dataset.tokens = String(tk.numTokens);
  canvas.dataset.frame = String(app.view.frame);
  setHTML(panel.querySelector(".sttm-legend"), legendHTML(2, app.view.colourBy, state.areas, false)
    + `<span class="sttm-key"><i style="background:rgba(0,120,255,0.25)"></i>current frame</span>`);
}

function chainAt(app, state, canvas, e) {
  const tk = app.tokens, L = state.layout;
  if (!tk || !L) return null;
  const r = canvas.getBoundingClientRect();
  const x = e.clientX - r.left, y = e.clientY - r.top;
  const f = Math.floor((x - L.left) / L.dx);
  if (f < 0 || f >= tk.T) return null;
  let best = null;
  for (let n = 0; n < tk.numTokens; n++) {
    if (tk.first[n] > f || tk.last[n] < f) continue;
    const d = Math.abs(L.top + tokenY(tk, n) * L.dy + L.dy / 2 - y);
    if (d < 5 && (!best || d < best.d)) best = { token: n, d };
  }
  return best;
}

// --- all frames ------------------------------------------------------------------------------
export function mountGrid(panel) {
  panel.innerHTML = `<div class="sttm-plot-note">Every frame's tokens (same view and colours as the map). Click a frame to show it on the map.</div><canvas class="sttm-grid"></canvas><div class="sttm-legend"></div>`;
  const canvas = panel.querySelector("canvas");
  const state = {};
  canvas.addEventListener("click", (e) => {
    const L = state.layout;
    if (!L) return;
    const r = canvas.getBoundingClientRect();
    const col = Math.floor((e.clientX - r.left) / (L.tw + L.gap)), row = Math.floor((e.clientY - r.top) / (L.th + L.gap));
    const t = row * L.cols + col;
    if (col < L.cols && t < app.ev.T) { app.stopPlaying(); app.setView({ frame: t }); }
  });
  app.register({ render: whenOnScreen(panel, () => drawGrid(app, panel, canvas, state)) });
}

function drawGrid(app, panel, canvas, state) {
  const tk = app.tokens, ev = app.ev;
  if (!ev) return;
  const T = ev.T, gap = 4;
  const cols = Math.min(T, 8), rows = Math.ceil(T / cols);
  const width = Math.max(300, widthOf(panel) - 4);
  const tw = Math.floor((width - gap * (cols - 1)) / cols);
  const img = app.images[0];
  const th = Math.round(tw * (img && img.naturalWidth ? img.naturalHeight / img.naturalWidth : ev.H / ev.W));
  state.layout = { cols, tw, th, gap };
  const ctx = sizeCanvas(canvas, width, rows * th + (rows - 1) * gap);
  const tokens = tk || tokensFrom(ev, new Int32Array(0), new Int32Array(0), new Int32Array(T * ev.H * ev.W).fill(-1));
  for (let t = 0; t < T; t++) {
    const x = (t % cols) * (tw + gap), y = Math.floor(t / cols) * (th + gap);
    ctx.save(); ctx.translate(x, y);
    drawFrame(ctx, tokens, t, tw, th, { image: app.images[t], step: tk ? app.view.step : 1, colourBy: app.view.colourBy,
                                              selected: app.selectedToken(), hover: app.view.hover, thin: true });
    const label = `${t + 1}${tk && app.view.step === 3 ? ` · ${tk.newPerFrame[t]} new` : ""}`;
    ctx.font = "10px sans-serif";
    ctx.fillStyle = "rgba(0,0,0,0.7)"; ctx.fillRect(0, 0, ctx.measureText(label).width + 6, 14);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, 3, 10);
    if (t === app.view.frame) { ctx.strokeStyle = "#0078ff"; ctx.lineWidth = 3; ctx.strokeRect(1.5, 1.5, tw - 3, th - 3); }
    ctx.restore();
  }
  const areas = [];
  if (tk) for (let s = 0; s < tk.numSpatial; s++) areas.push((tk.spatialBoxes[5 * s + 3] - tk.spatialBoxes[5 * s + 1]) * (tk.spatialBoxes[5 * s + 4] - tk.spatialBoxes[5 * s + 2]));
  setHTML(panel.querySelector(".sttm-legend"), legendHTML(tk ? app.view.step : 1, app.view.colourBy, areas, !!(tk && tk.served && app.method(tk.served).query_aware)));
}

// --- threshold histograms with the keep-ratio curve --------------------------------------------
/** which: "spatial" (each box's lowest similarity to its quarters, what τS tests) or
 * "temporal" (the nested pairs of consecutive frames, what τT tests). */
export function mountHistogram(element, which) {
  const el = element.querySelector(".sttm-root") || element;
  el.innerHTML = `<div class="sttm-hist"><canvas></canvas><div class="sttm-hist-note"></div></div>`;
  const canvas = el.querySelector("canvas"), note = el.querySelector(".sttm-hist-note");
  const state = { which, curveKey: "", curve: null, pending: null };
  // a finished curve redraws this histogram only (not every view of the page)
  state.redraw = whenOnScreen(el, () => drawHistogram(app, el, canvas, note, state));
  app.register({ render: state.redraw });
}

/** The values a histogram shows, sorted; cached by what they depend on (the evidence and
 * root level for τS, the tokens for τT). */
function sortedValues(app, which, state) {
  const tk = app.tokens;
  const key = which === "spatial" ? `${app.payload.id}|${tk && tk.root !== undefined ? tk.root : app.rootIndex()}` : tk;
  if (state.sortedKey !== key) {
    state.sortedKey = key;
    state.sorted = histValues(app, which).sort();
  }
  return state.sorted;
}

function histValues(app, which) {
  const tk = app.tokens, ev = app.ev, eff = app.current;
  if (which === "spatial") {
    const rootLevel = tk && tk.root !== undefined ? tk.root : app.rootIndex();
    // every box's lowest child similarity (its interval's upper end) from the root grid down
    // to the level above the leaves, each frame's slice of `high`
    const first = ev.offsets[rootLevel], stop = ev.offsets[ev.L - 1], out = new Float32Array(ev.T * (stop - first));
    for (let t = 0; t < ev.T; t++) out.set(ev.high.subarray(t * ev.M + first, t * ev.M + stop), t * (stop - first));
    return out;
  }
  return tk && tk.pairs ? Float32Array.from(tk.pairs.ps) : new Float32Array(0);
}

function drawHistogram(app, el, canvas, note, state) {
  const ev = app.ev;
  const w = Math.max(200, widthOf(el) - 2), h = 82;
  const ctx = sizeCanvas(canvas, w, h);
  ctx.clearRect(0, 0, w, h);
  if (!ev) { note.textContent = ""; return; }
  const which = state.which, tk = app.tokens, eff = app.current || {};
  const tau = which === "spatial" ? (tk && tk.tauS !== undefined ? tk.tauS : null) : (tk && tk.tauT !== undefined ? tk.tauT : null);
  const name = which === "spatial" ? "τS" : "τT";
  const method = app.settings.method;
  if ((!tk || tk.served) && app.method(method).computed === "server") { // no threshold acts here
    note.textContent = `Not used: ${app.labels[method] || method} does not compare similarities with ${name}.`;
    return;
  }
  if (!tk) { note.textContent = (app.current && app.current.why) || ""; return; }
  const sorted = sortedValues(app, which, state);
  if (!sorted.length) {
    note.textContent = which === "temporal" ? (ev.T === 1 ? "One frame: nothing to merge across frames." : "No nested pairs to test.") : "The root grid is the patch grid: no boxes to test.";
    return;
  }
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  // the x range shows where most values are, from the values alone: it stays put while the
  // threshold is dragged (a threshold below it sits on the one bar "< lo" on the left)
  const lo = Math.max(-1, Math.min(0.9, Math.floor(q(0.25) * 10) / 10));
  const hi = 1.0;
  const B = Math.round((hi - lo) * 100) > 40 ? 40 : Math.round((hi - lo) * 100), counts = new Int32Array(B);
  let under = 0;
  for (const v of sorted) {
    if (v < lo) { under++; continue; }
    counts[Math.max(0, Math.min(B - 1, Math.floor(((v - lo) / (hi - lo)) * B)))]++;
  }
  // bars on top; the keep-ratio curve on its own axis under them (its share of tokens)
  const L = { left: 30, right: 34, top: 6, bottom: 14 };
  const pw = w - L.left - L.right, ph = 32, cTop = L.top + ph + 5, ch = h - L.bottom - cTop;
  const X = (v) => L.left + ((v - lo) / (hi - lo)) * pw;
  const maxC = Math.max(1, under, ...counts);
  const bar = (c) => Math.sqrt(c / maxC) * ph; // sqrt: small bins stay visible
  const t32 = tau === null ? Infinity : Math.fround(tau);
  const on = which === "spatial" ? "#1b9e77" : "#7570b3";
  for (let b = 0; b < B; b++) {
    const v0 = lo + (b / B) * (hi - lo);
    ctx.fillStyle = v0 + (hi - lo) / B / 2 >= t32 ? on : "#c9c9c9";
    ctx.fillRect(X(v0) + 0.5, L.top + ph - bar(counts[b]), Math.max(1, pw / B - 1), bar(counts[b]));
  }
  ctx.fillStyle = "#c9c9c9";
  ctx.fillRect(4, L.top + ph - bar(under), 20, bar(under));
  ctx.fillStyle = "#555"; ctx.font = "10px sans-serif"; ctx.textAlign = "center";
  ctx.fillText(`<${lo.toFixed(1)}`, 14, h - 3);
  const ticks = hi - lo > 0.45 ? 0.2 : 0.05;
  for (let v = Math.ceil(lo / ticks + 0.5) * ticks; v <= hi + 1e-9; v += ticks) ctx.fillText(v.toFixed(2), X(v), h - 3);
  ctx.textAlign = "left";
  // keep ratio as the threshold moves (computed once the sliders rest), on its own y axis
  const kept = tk.numTokens / (ev.T * ev.H * ev.W);
  const curve = keepCurve(app, state, lo, hi);
  const top = niceCeil(Math.max(kept, ...(curve || []).map(([, r]) => r)));
  const Y = (r) => cTop + ch * (1 - r / top);
  ctx.strokeStyle = "#bbb"; ctx.lineWidth = 1; ctx.strokeRect(L.left + 0.5, cTop + 0.5, pw, ch);
  ctx.fillStyle = "#b2182b"; ctx.textAlign = "left";
  ctx.fillText(`${Math.round(100 * top)}%`, w - L.right + 3, cTop + 8); ctx.fillText("0%", w - L.right + 3, cTop + ch);
  ctx.fillText("kept", 2, cTop + ch / 2 + 3);
  if (curve) {
    ctx.strokeStyle = "#b2182b"; ctx.lineWidth = 1.5; ctx.beginPath();
    curve.forEach(([v, r], k) => { const x = X(v), y = Y(r); if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
  }
  if (tau !== null) {
    const x = tau < lo ? 14 : X(Math.min(hi, tau));
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath(); ctx.moveTo(x, L.top - 4); ctx.lineTo(x, cTop + ch); ctx.stroke();
    ctx.fillStyle = "#b2182b"; ctx.beginPath(); ctx.arc(x, Y(kept), 4, 0, 2 * Math.PI); ctx.fill();
  }
  canvas.dataset.lo = String(lo);
  canvas.dataset.curve = curve ? "1" : "";
  const n = sorted.length.toLocaleString("en-US");
  const above = tau === null ? 0 : sorted.length - lowerBound(sorted, t32);
  const share = Math.round((100 * above) / sorted.length);
  note.innerHTML = which === "spatial"
    ? `${n} boxes' lowest cosine similarity to a quarter: <b class="sttm-on-s">${share}% ≥ τS</b> (stay whole). <span class="sttm-red">Under it: tokens kept vs τS (dot: now).</span>`
    : `${n} nested box pairs of consecutive frames: <b class="sttm-on-t">${share}% ≥ τT</b> (merge). <span class="sttm-red">Under it: tokens kept vs τT (dot: now).</span>`;
}

/** The y axis' top for keep ratios: the next of 5%, 10%, 20%, 50%, 100% above r. */
function niceCeil(r) {
  return [0.05, 0.1, 0.2, 0.5, 1].find((top) => r <= top + 1e-9) || 1;
}

function lowerBound(sorted, v) {
  let a = 0, b = sorted.length;
  while (a < b) { const m = (a + b) >> 1; if (sorted[m] < v) a = m + 1; else b = m; }
  return a;
}

/** [[threshold, keep ratio]] over [lo, hi] with the other threshold and root fixed; computed
 * in small slices once the sliders rest, so a slider never waits for it (on a slow phone a
 * merge takes a few ms: a finger's next move lands between two of them). */
function keepCurve(app, state, lo, hi) {
  const tk = app.tokens, ev = app.ev;
  if (!tk || tk.served || tk.tauS === undefined) return null;
  const other = state.which === "spatial" ? tk.tauT : tk.tauS;
  const key = `${app.payload.id}|${state.which}|${other}|${tk.root}|${lo}`;
  if (state.curveKey === key) return state.curve && state.curve.done ? state.curve.points : null;
  state.curveKey = key;
  state.curve = { points: [], done: false };
  const curve = state.curve, steps = 32, total = ev.T * ev.H * ev.W;
  const xs = Array.from({ length: steps + 1 }, (_, k) => lo + (k / steps) * (hi - lo));
  let k = 0;
  const work = () => {
    if (state.curve !== curve) return; // settings moved on: a newer curve is being made
    const until = performance.now() + 4;
    while (k < xs.length && performance.now() < until) {
      const r = state.which === "spatial" ? merge(ev, xs[k], other, tk.root) : merge(ev, other, xs[k], tk.root);
      curve.points.push([xs[k], r.numTokens / total]);
      k++;
    }
    if (k < xs.length) setTimeout(work, 16);
    else { curve.done = true; state.redraw(); }
  };
  setTimeout(work, 250);
  return null;
}
