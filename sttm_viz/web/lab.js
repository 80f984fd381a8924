/* The lab: the token map of one frame with its player, the pipeline readout (patches ->
after tauS -> after tauT, which doubles as the before/after switch), the legend, and the
inspector that says why a clicked token is what it is. Below: the chains over time and all
frames (plots.js), drawn when shown. */
import { app } from "./app.js";
import { drawFrame, edges, fmtSim, legendHTML, setHTML, widthOf } from "./draw.js";
import { carriedShare, merge, tokensFrom, trail } from "./merge.js";
import { mountChains, mountGrid } from "./plots.js";
import { say } from "./words.js";

const fmt = (v, d = 3) => fmtSim(v, d);
const pct = (v) => `${(100 * v).toFixed(1)}%`;
const num = (v) => Number(v).toLocaleString("en-US");
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

const HTML = `
<div class="sttm-lab">
  <div class="sttm-pipeline" role="group" aria-label="Merge steps: click one to see it on the map">
    <button class="sttm-step" data-step="1"></button><span class="sttm-arrow">→ τS →</span>
    <button class="sttm-step" data-step="2"></button><span class="sttm-arrow">→ τT →</span>
    <button class="sttm-step" data-step="3"></button>
  </div>
  <div class="sttm-example"></div>
  <div class="sttm-settings"></div>
  <div class="sttm-layers" role="img"></div>
  <div class="sttm-body">
    <div class="sttm-stage">
      <div class="sttm-canvas-wrap"><canvas class="sttm-map" tabindex="0" aria-label="Token map of the current frame: click a token, or use the arrow keys to move and Enter to inspect; comma and period step frames"></canvas>
        <div class="sttm-tip"></div><div class="sttm-wait"></div></div>
      <div class="sttm-player">
        <button data-act="prev" title="previous frame (←)">‹</button>
        <button data-act="play" title="play / pause">▶</button>
        <button data-act="next" title="next frame (→)">›</button>
        <input type="range" class="sttm-frame" min="0" max="0" value="0" step="1" aria-label="frame">
        <span class="sttm-frame-label"></span>
      </div>
      <div class="sttm-carried" aria-live="polite"></div>
      <div class="sttm-legend-row"><div class="sttm-legend"></div>
        <select class="sttm-colour" aria-label="colour"><option value="size">colour: box size</option><option value="chain">colour: token</option></select></div>
    </div>
    <div class="sttm-inspector" aria-live="polite"></div>
  </div>
  <div class="sttm-tabs" role="tablist">
    <button data-tab="chains" class="on">Chains over time</button><button data-tab="grid">All frames</button>
  </div>
  <div class="sttm-panel" data-panel="chains"></div>
  <div class="sttm-panel" data-panel="grid" hidden></div>
</div>`;

/** The lab in `element` (props.protocol: the page protocol, sttm_viz/protocol.py). */
export function mountLab(element, props) {
  if (props && props.protocol) app.useProtocol(props.protocol);
  const rootEl = element.querySelector(".sttm-root") || element;
  rootEl.innerHTML = HTML;
  const $ = (sel) => rootEl.querySelector(sel);
  const canvas = $(".sttm-map"), tip = $(".sttm-tip");
  const ui = { rootEl, canvas, tip, frame: $(".sttm-frame") };

  // --- events of the lab's own controls (instant, no server)
  rootEl.querySelectorAll(".sttm-step").forEach((b) => b.addEventListener("click", () => app.setView({ step: Number(b.dataset.step) })));
  $(".sttm-colour").addEventListener("change", (e) => app.setView({ colourBy: e.target.value }));
  ui.frame.addEventListener("input", () => { app.stopPlaying(); app.setView({ frame: Number(ui.frame.value) }); });
  rootEl.querySelector(".sttm-player").addEventListener("click", (e) => {
    const act = e.target.dataset && e.target.dataset.act;
    if (!act || !app.tokens) return;
    const T = app.tokens.T;
    if (act === "play") { if (app.view.playing) { app.stopPlaying(); app.render("view"); } else app.play(); return; }
    app.stopPlaying();
    app.setView({ frame: (app.view.frame + (act === "next" ? 1 : T - 1)) % T });
  });
  canvas.addEventListener("keydown", (e) => mapKey(app, e));
  canvas.addEventListener("focus", () => { if (!app.view.cursor && app.ev) app.setView({ cursor: { y: app.ev.H >> 1, x: app.ev.W >> 1 } }); });
  canvas.addEventListener("blur", () => { if (app.view.cursor) app.setView({ cursor: null }); });
  canvas.addEventListener("mousemove", (e) => hover(app, ui, e));
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; if (app.view.hover !== -1) app.setView({ hover: -1 }); });
  canvas.addEventListener("click", (e) => {
    const p = patchAt(app, canvas, e);
    app.setView({ selected: p ? { t: app.view.frame, y: p.y, x: p.x } : null });
  });
  rootEl.querySelectorAll(".sttm-tabs button").forEach((b) => b.addEventListener("click", () => {
    rootEl.querySelectorAll(".sttm-tabs button").forEach((o) => o.classList.toggle("on", o === b));
    rootEl.querySelectorAll(".sttm-panel").forEach((p) => { p.hidden = p.dataset.panel !== b.dataset.tab; });
    app.render("tab");
  }));
  rootEl.querySelector(".sttm-inspector").addEventListener("mouseover", (e) => {
    const row = e.target.closest && e.target.closest("[data-box]");
    const box = row ? row.dataset.box.split(",").map(Number) : null;
    if (JSON.stringify(box) !== JSON.stringify(app.view.outline || null)) app.setView({ outline: box });
  });
  rootEl.querySelector(".sttm-inspector").addEventListener("mouseleave", () => { if (app.view.outline) app.setView({ outline: null }); });
  mountChains(rootEl.querySelector('[data-panel="chains"]'));
  mountGrid(rootEl.querySelector('[data-panel="grid"]'));
  app.register({ render: (a, reason) => renderLab(a, ui, reason) });
  app.register({ render: presetKeeps() });
  new ResizeObserver(() => app.render("resize")).observe(rootEl);
}

function renderLab(app, ui, reason) {
  const root = ui.rootEl;
  const tk = app.tokens, ev = app.ev;
  root.classList.toggle("sttm-empty", !ev);
  if (!ev) {
    setHTML(root.querySelector(".sttm-settings"), esc(app.loadingNote || "Pick an example video or upload your own: its tokens appear here."));
    return;
  }
  const T = ev.T;
  app.view.frame = Math.min(app.view.frame, T - 1);
  renderPipeline(app, root);
  renderSettings(app, root.querySelector(".sttm-settings"));
  const ex = app.payload.example;
  setHTML(root.querySelector(".sttm-example"), ex ? `<b>${esc(ex.title)}</b> — ${esc(ex.look)}` : "");
  ui.frame.max = String(T - 1);
  ui.frame.value = String(app.view.frame);
  root.querySelector('[data-act="play"]').textContent = app.view.playing ? "❚❚" : "▶";
  const wait = app.loadingNote || (app.current && app.current.kind === "wait" ? app.current.why : "");
  root.querySelector(".sttm-wait").textContent = wait;
  root.querySelector(".sttm-wait").style.display = wait ? "block" : "none";
  drawMap(app, ui);
  root.querySelector(".sttm-frame-label").textContent = frameLabel(app);
  setHTML(root.querySelector(".sttm-carried"), esc(carriedCaption(app)));
  renderLayers(app, root.querySelector(".sttm-layers"));
  const areas = [];
  if (tk && app.view.step > 1) {
    const b = tk.spatialBoxes;
    for (let s = 0; s < tk.numSpatial; s++) if (b[5 * s] === app.view.frame) areas.push((b[5 * s + 3] - b[5 * s + 1]) * (b[5 * s + 4] - b[5 * s + 2]));
  }
  const hasDropped = !!(tk && tk.served && app.method(tk.served).query_aware); // FastV, FrameFusion drop patches
  setHTML(root.querySelector(".sttm-legend"), legendHTML(tk ? app.view.step : 1, app.view.colourBy, areas, hasDropped));
  if (reason !== "image") renderInspector(app, root.querySelector(".sttm-inspector"));
}

function renderPipeline(app, root) {
  const ev = app.ev, tk = app.tokens, total = ev.T * ev.H * ev.W;
  const served = tk && tk.served;
  const b = root.querySelectorAll(".sttm-step");
  const fr = app.payload.token_frames;
  setHTML(b[0], `<b>${num(total)}</b> patches<small>${fr} frames × ${ev.H}×${ev.W}</small>`);
  if (!tk) { setHTML(b[1], "<b>…</b>"); setHTML(b[2], "<b>…</b>"); }
  else if (served) {
    const dropped = app.method(served).query_aware ? total - tk.numTokens : 0;
    setHTML(b[1], `<b>${num(tk.numSpatial - dropped)}</b> boxes<small>${esc(app.labels[served] || served)}</small>`);
    setHTML(b[2], `<b>${num(tk.numTokens)}</b> tokens<small>${pct(tk.numTokens / total)} kept</small>`);
  } else {
    setHTML(b[1], `<b>${num(tk.numSpatial)}</b> boxes<small>${esc(say("after_tau_s", { pct: pct(tk.numSpatial / total) }))}</small>`);
    setHTML(b[2], `<b>${num(tk.numTokens)}</b> tokens<small>${esc(say("after_tau_t", { pct: pct(tk.numTokens / total) }))}</small>`);
  }
  b.forEach((el) => el.classList.toggle("on", Number(el.dataset.step) === app.view.step));
}

function renderSettings(app, el) {
  const s = app.settings, eff = app.current || {}, ev = app.ev, d = app.method();
  const grid = `${ev.sizes[app.rootIndex()][0]}×${ev.sizes[app.rootIndex()][1]}`;
  let what;
  if (eff.kind === "merge" && eff.source === "thresholds") {
    what = `τS ${fmt(eff.tauS, 2)} · τT ${eff.tauT === null ? "off" : fmt(eff.tauT, 2)} · root grid ${grid}`;
  } else if (eff.kind === "merge") {
    const tauT = eff.tauT === null ? "off" : fmt(eff.tauT);
    const root = d.quadtree ? `root grid ${grid}` : "no quadtree (each patch on its own)";
    what = `${d.label} at a ${Math.round(100 * s.budget)}% budget → τS ${eff.tauS === null ? "off" : fmt(eff.tauS)}, τT ${tauT} (found for this video) · ${root}`;
  } else what = `${d.label} at ${Math.round(100 * s.budget)}%: ${d.summary}`; // the registry's line
  const notes = [...(app.payload.notes || [])];
  setHTML(el, `${esc(what)} · features: ${esc(app.payload.source)}` +
    notes.map((n) => `<div class="sttm-note">${esc(n)}</div>`).join(""));
}

function frameLabel(app) {
  const tk = app.tokens, t = app.view.frame;
  const per = Math.round(app.payload.frames_sampled / app.payload.token_frames);
  const head = per > 1 ? `token frame ${t + 1} / ${app.ev.T} (frames ${per * t + 1}–${per * t + per})`
    : `frame ${t + 1} / ${app.ev.T}`;
  if (!tk || app.view.step === 1) return `${head} · ${app.ev.H * app.ev.W} patches`;
  if (app.view.step === 2) return `${head} · ${tk.spatialPerFrame[t]} boxes`;
  return `${head} · ${tk.spatialPerFrame[t]} boxes, ${tk.newPerFrame[t]} new tokens`;
}

/** What each preset keeps on this video's features (a paper setting tuned on hidden states
 * keeps far less on pixels): two merges per video and root grid, written under the presets. */
function presetKeeps() {
  let key = "";
  return (app) => {
    const host = document.querySelector("#sttm-preset-note") || document.querySelector("#sttm-presets.sttm-ctl");
    if (!host || !app.ev || !app.protocol) return;
    const root = app.rootIndex(), k = `${app.payload.id}|${root}`;
    if (k === key) return;
    key = k;
    let el = host.querySelector(".sttm-preset-keep");
    if (!el) { el = document.createElement("div"); el.className = "sttm-preset-keep"; host.append(el); }
    const total = app.ev.T * app.ev.H * app.ev.W;
    const keeps = Object.entries(app.protocol.presets).map(([name, [s, t]]) =>
      `${name.split(" (")[0]} keeps ${pct(merge(app.ev, s, t, root).numTokens / total)}`).join(", ");
    el.textContent = say("preset_keep", { features: app.payload.source, keeps });
  };
}

// --- the keyboard on the map: a cursor over the patches, Enter inspects ----------------------
const MOVES = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
const FRAME_KEYS = { ",": -1, ".": 1, PageUp: -1, PageDown: 1 };

function mapKey(app, e) {
  const tk = app.tokens, ev = app.ev;
  if (!ev) return;
  const cur = app.view.cursor || { y: ev.H >> 1, x: ev.W >> 1 };
  if (MOVES[e.key]) {
    const [dy, dx] = MOVES[e.key];
    app.setView({ cursor: { y: Math.max(0, Math.min(ev.H - 1, cur.y + dy)), x: Math.max(0, Math.min(ev.W - 1, cur.x + dx)) } });
  } else if (e.key === "Enter" || e.key === " ") {
    app.setView({ cursor: cur, selected: { t: app.view.frame, y: cur.y, x: cur.x } });
  } else if (e.key === "Escape") {
    app.setView({ selected: null });
  } else if (FRAME_KEYS[e.key] && tk) {
    app.stopPlaying();
    app.setView({ frame: (app.view.frame + FRAME_KEYS[e.key] + tk.T) % tk.T });
  } else return;
  e.preventDefault();
}

/** The caption under the map: what τT did on the frame shown (the first view teaches τT). */
function carriedCaption(app) {
  const tk = app.tokens, t = app.view.frame;
  if (!tk || tk.served || app.view.step !== 3 || tk.T === 1) return "";
  if (t === 0) return say("carried_first");
  const share = carriedShare(tk, t);
  return say(share > 0 ? "carried" : "carried_none", { frame: t + 1, pct: `${Math.round(100 * share)}%` });
}

// --- the merge layer: where in the decoder STTM acts ------------------------------------------
/** Bars, one per decoder layer, as tall as the video tokens it reads: all before layer k,
 * the kept ones from k on. Without a model a notional decoder (the paper's k = 2). */
function renderLayers(app, el) {
  const tk = app.tokens, ev = app.ev, model = app.payload.model;
  const all = ev.T * ev.H * ev.W, kept = tk ? tk.numTokens : all;
  const layers = model ? model.layers : 28, k = model ? model.layer : 2;
  const n = Math.min(layers, 28), kk = Math.round((k / layers) * n);
  const bw = 7, gap = 2, h = 30, x0 = 2;
  const bars = [];
  for (let l = 0; l < n; l++) {
    const bh = l < kk ? h : Math.max(2, Math.round(h * Math.sqrt(kept / all)));
    bars.push(`<rect x="${x0 + l * (bw + gap)}" y="${h - bh + 2}" width="${bw}" height="${bh}" class="${l < kk ? "all" : "kept"}"/>`);
  }
  const mx = x0 + kk * (bw + gap) - gap / 2;
  const w = x0 + n * (bw + gap);
  const svg = `<svg width="${w + 4}" height="${h + 16}" aria-hidden="true">${bars.join("")}` +
    `<line x1="${mx}" x2="${mx}" y1="0" y2="${h + 4}" class="merge"/>` +
    `<text x="${mx}" y="${h + 14}" text-anchor="middle">k</text></svg>`;
  const vars = { all: num(all), kept: num(kept), k, model: model ? model.name : "", layers,
                 before: Math.max(0, k - 1), last: layers - 1 };
  const text = say(model ? "layers_model" : "layers_pixels", vars);
  el.setAttribute("aria-label", text);
  setHTML(el, `<div class="sttm-layers-fig">${svg}<span class="sttm-dim">${esc(say("layers_caption"))}</span></div><div class="sttm-layers-text">${esc(text)}</div>`);
}

// --- the map ---------------------------------------------------------------------------------
function mapSize(app, ui) {
  const wrap = ui.canvas.parentElement;
  const img = app.images[0];
  const aspect = img && img.naturalWidth ? img.naturalHeight / img.naturalWidth : app.ev.H / app.ev.W;
  const maxW = Math.max(200, widthOf(wrap) || 520), maxH = 420;
  const w = Math.round(Math.min(maxW, maxH / aspect));
  return [w, Math.round(w * aspect)];
}

function drawMap(app, ui) {
  const [w, h] = mapSize(app, ui);
  const dpr = window.devicePixelRatio || 1;
  const c = ui.canvas;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    c.style.width = `${w}px`; c.style.height = `${h}px`;
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const t = app.view.frame;
  const tokens = app.tokens || tokensFrom(app.ev, new Int32Array(0), new Int32Array(0), new Int32Array(app.ev.T * app.ev.H * app.ev.W).fill(-1));
  drawFrame(ctx, tokens, t, w, h, {
    image: app.images[t], step: app.tokens ? app.view.step : 1, colourBy: app.view.colourBy,
    selected: app.selectedToken(), hover: app.view.hover });
  const box = app.view.outline;
  if (box && box[0] === t) {
    const ye = edges(app.ev.H, h), xe = edges(app.ev.W, w);
    ctx.save(); ctx.setLineDash([5, 3]); ctx.lineWidth = 2; ctx.strokeStyle = "#00e5ff";
    ctx.strokeRect(xe[box[2]] + 1, ye[box[1]] + 1, xe[box[4]] - xe[box[2]] - 2, ye[box[3]] - ye[box[1]] - 2);
    ctx.restore();
  }
  drawCursor(app, ctx, w, h);
  c.dataset.frame = String(t);
  c.dataset.tokens = app.tokens ? String(app.tokens.numTokens) : "";
  c.dataset.render = String(app.renders);
}

/** The keyboard's cursor: the box under it, dashed (the patch itself before τS). */
function drawCursor(app, ctx, w, h) {
  const cur = app.view.cursor, tk = app.tokens;
  if (!cur) return;
  const ye = edges(app.ev.H, h), xe = edges(app.ev.W, w);
  let box = [cur.y, cur.x, cur.y + 1, cur.x + 1];
  if (tk && app.view.step > 1) {
    const s = tk.spatialMap[(app.view.frame * tk.H + cur.y) * tk.W + cur.x];
    box = Array.from(tk.spatialBoxes.subarray(5 * s + 1, 5 * s + 5));
  }
  ctx.save(); ctx.setLineDash([4, 3]); ctx.lineWidth = 3;
  for (const [colour, offset] of [["#000", 0], ["#fff", 4]]) {
    ctx.strokeStyle = colour; ctx.lineDashOffset = offset;
    ctx.strokeRect(xe[box[1]] + 2, ye[box[0]] + 2, xe[box[3]] - xe[box[1]] - 4, ye[box[2]] - ye[box[0]] - 4);
  }
  ctx.restore();
}

function patchAt(app, canvas, e) {
  if (!app.ev) return null;
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((e.clientX - r.left) / r.width) * app.ev.W);
  const y = Math.floor(((e.clientY - r.top) / r.height) * app.ev.H);
  if (x < 0 || y < 0 || x >= app.ev.W || y >= app.ev.H) return null;
  return { x, y };
}

function hover(app, ui, e) {
  const p = patchAt(app, ui.canvas, e), tk = app.tokens;
  if (!p || !tk) { ui.tip.style.display = "none"; return; }
  const t = app.view.frame, k = (t * tk.H + p.y) * tk.W + p.x;
  const token = tk.tokenMap[k], s = tk.spatialMap[k];
  const b = tk.spatialBoxes.subarray(5 * s, 5 * s + 5);
  let text = `${b[3] - b[1]}×${b[4] - b[2]} box`;
  if (token < 0) text += " · dropped";
  else {
    const span = tk.first[token] === tk.last[token] ? `frame ${tk.first[token] + 1} only` : `frames ${tk.first[token] + 1}–${tk.last[token] + 1}`;
    text += ` · token ${token} · ${span}${tk.first[token] < t ? " · carried over" : ""} — click: why`;
  }
  ui.tip.textContent = text;
  ui.tip.style.display = "block";
  const r = ui.canvas.getBoundingClientRect();
  ui.tip.style.left = `${Math.min(e.clientX - r.left + 12, r.width - 180)}px`;
  ui.tip.style.top = `${e.clientY - r.top + 14}px`;
  if (token !== app.view.hover) app.setView({ hover: token });
}

// --- the inspector: why this token -----------------------------------------------------------
function renderInspector(app, el) {
  const sel = app.view.selected, tk = app.tokens, ev = app.ev;
  if (!sel || !tk) {
    setHTML(el, `<div class="sttm-hint">${say("primer", { action: touch() ? "Tap" : "Click" })}</div>`);
    return;
  }
  const k = (sel.t * tk.H + sel.y) * tk.W + sel.x;
  const s = tk.spatialMap[k], token = tk.tokenMap[k];
  const [t, y0, x0, y1, x1] = tk.spatialBoxes.subarray(5 * s, 5 * s + 5);
  const here = app.view.frame === sel.t ? "" : ` <span class="sttm-dim">(clicked in frame ${sel.t + 1}; now showing frame ${app.view.frame + 1}${token >= 0 && tk.first[token] <= app.view.frame && app.view.frame <= tk.last[token] && hasBoxIn(tk, token, app.view.frame) ? ", where it is too" : ", where it is not"})</span>`;
  let html = `<div class="sttm-ins-head">${token < 0 ? "Dropped patch" : `Token ${token}`}: a ${y1 - y0}×${x1 - x0} box of frame ${t + 1}${here}</div>`;
  if (token >= 0) {
    const span = tk.last[token] - tk.first[token] + 1;
    html += `<div>It stands for <b>${tk.numPatches[token]}</b> patches over frames ${tk.first[token] + 1}–${tk.last[token] + 1} (${span} frame${span > 1 ? "s" : ""}).` +
      (tk.first[token] < t ? ` <b>Carried over</b>: the model got it at frame ${tk.first[token] + 1}.` : " <b>New here</b>: the model gets it in this frame.") + `</div>`;
    if (tk.numPatches[token] > (y1 - y0) * (x1 - x0) && span > 1) html += `<div class="sttm-dim">${esc(say("nested"))}</div>`;
  }
  if (tk.served) { setHTML(el, html + servedWhy(app, tk)); return; }
  html += spatialWhy(app, tk, s) + temporalWhy(app, tk, s);
  setHTML(el, html);
}

/** A finger, not a mouse, is the main pointer (a phone): the hints say "tap". */
function touch() { return typeof matchMedia === "function" && matchMedia("(pointer: coarse)").matches; }

function hasBoxIn(tk, token, t) {
  for (let s = 0; s < tk.numSpatial; s++) if (tk.spatialBoxes[5 * s] === t && tk.spatialToToken[s] === token) return true;
  return false;
}

/** Why this box, from its τS decisions (trail): each box from the root grid down split
 * because its lowest similarity to a quarter is under τS; the token's own box is at least τS
 * (or a single patch); so the box is a token for every τS in its interval (low, high]. */
function spatialWhy(app, tk, s) {
  const ev = app.ev, n = tk.node[s], t = tk.spatialBoxes[5 * s], tau = tk.tauS;
  const steps = trail(ev, t, n, tk.root);
  const rows = steps.path.map(({ node: a, high }) => {
    const own = a === n, l = ev.level[a], [h, w] = ev.sizes[l];
    const [y0, x0, y1, x1] = ev.box.subarray(4 * a, 4 * a + 4);
    const label = `${y1 - y0}×${x1 - x0} box<br><span class="sttm-dim">of the ${h}×${w} grid${l === tk.root ? " (root)" : ""}</span>`;
    let cell = "<span></span>", verdict;
    if (high === Infinity) verdict = "a single patch: always a token";
    else {
      cell = `<span class="sttm-sim sttm-low ${own ? "pass" : "fail"}" data-value="${high}" title="lowest similarity to a quarter: ${fmt(high, 4)}">${fmt(high)}</span>`;
      if (tau === null) verdict = "spatial merging off: split";
      else verdict = own ? `lowest ≥ τS → <b class="pass">one token</b>` : `lowest &lt; τS → <b class="fail">split</b>`;
    }
    return `<div class="sttm-path-row${own ? " this" : ""}" data-box="${[t, y0, x0, y1, x1].join(",")}"><span class="sttm-path-name">${label}</span>${cell}<span>${verdict}</span></div>`;
  });
  const value = tau === null ? "off" : fmt(tau);
  const end = (v) => (v === Infinity ? "∞" : v === -Infinity ? "−∞" : fmt(v));
  const interval = `<div class="sttm-interval" data-low="${steps.low}" data-high="${steps.high}">At this root grid the box is a token for any τS in (${end(steps.low)}, ${end(steps.high)}]: above every lowest similarity on its way down, at most its own.</div>`;
  return `<div class="sttm-ins-sec">Why this box (τS ${value}): each box's lowest similarity to its 4 quarters, from the root grid down</div><div class="sttm-trail">${rows.join("")}</div>${tau === null ? "" : interval}`;
}

function temporalWhy(app, tk, s) {
  const tau = tk.tauT;
  const { pe, pl, ps } = tk.pairs;
  if (tk.T === 1) return `<div class="sttm-ins-sec">Across frames: a single frame, nothing to merge in time.</div>`;
  const links = [];
  for (let k = 0; k < pe.length; k++) {
    if (pl[k] === s) links.push([-1, pe[k], ps[k]]);
    else if (pe[k] === s) links.push([1, pl[k], ps[k]]);
  }
  links.sort((a, b) => a[0] - b[0] || b[2] - a[2]);
  const rows = links.map(([dir, o, sim]) => {
    const b = tk.spatialBoxes.subarray(5 * o, 5 * o + 5);
    const ok = tau !== null && sim >= Math.fround(tau);
    const same = tk.spatialToToken[o] === tk.spatialToToken[s];
    let verdict = tau === null ? "temporal merging off" : ok ? `≥ τT → <b class="pass">same token</b>` : `&lt; τT → <b class="fail">separate</b>`;
    if (ok && !same) verdict = "≥ τT, but the official union-find stopped before joining them";
    return `<div class="sttm-path-row" data-box="${Array.from(b).join(",")}"><span class="sttm-path-name">${dir < 0 ? "← previous" : "→ next"} frame (${b[0] + 1}): ${b[3] - b[1]}×${b[4] - b[2]} box</span><span class="sttm-sim ${ok ? "pass" : "fail"}">${fmt(sim)}</span><span>${verdict}</span></div>`;
  });
  const value = tau === null ? "off" : fmt(tau);
  return `<div class="sttm-ins-sec">Across frames (τT ${value}): its similarity to each box at the same place in the neighbouring frames, one inside the other</div><div class="sttm-links">${rows.join("") || "<div>no neighbouring frame</div>"}</div>`;
}

/** Why a baseline's token is what it is: no thresholds, the method's own rule. */
function servedWhy(app, tk) {
  const d = app.method(tk.served), budget = Math.round(100 * app.settings.budget);
  const question = d.query_aware ? " It depends on the question, so the video prefix is rebuilt for every question." : "";
  return `<div class="sttm-ins-sec">${esc(d.label)} has no thresholds; at a ${budget}% budget: ${esc(d.summary)}.${question}</div>`;
}
