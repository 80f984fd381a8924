/* The static page's entry module and bridge: plain HTML controls wired to the page's state
(app.js), playing Gradio's role (sttm-studio export writes the page; no server behind it).

Flow: the page's words arrive as JSON (#sttm-config, from sttm_viz.guide and the method menu)
-> build the controls -> mount the lab and the histograms (lab.js, plots.js) -> load the first
video's payload.json (what the app's `load` sends). A control moved calls app's actions as ui.py's
JavaScript does (control, controlState, budgetMoved); their Gradio-style updates
({__type__: "update", value, interactive, info, visible}) are applied to the controls here;
a value set that way fires the control's listeners, as Gradio's .change does. The page asks
`requestServer` for what the app's server sends (handlers.sync): budget tables come from the
video's tables.json, an exported baseline's tokens from the file the config names under the
video's `served` (both computed at export).
*/
import { app } from "./app.js";
import { mountLab } from "./lab.js";
import { mountHistogram } from "./plots.js";

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const h = (tag, attrs = {}, html = "") => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.innerHTML = html;
  return el;
};

/** A control: its element, value, listeners and Gradio-style update. kind: slider, check,
 * radio, select. */
function makeControl(kind, id, label, opts) {
  const el = h("div", { id, class: "sttm-ctl" });
  const ctl = { el, kind, value: opts.value, listeners: [], info: h("div", { class: "sttm-info" }) };
  if (kind === "check") {
    const lab = h("label", {}, "");
    ctl.input = h("input", { type: "checkbox" });
    ctl.input.checked = Boolean(opts.value);
    lab.append(ctl.input, document.createTextNode(" " + label));
    el.append(lab, ctl.info);
    ctl.input.addEventListener("change", () => ctl.set({ value: ctl.input.checked }, true));
  } else {
    if (label) el.append(h("span", { class: "sttm-label" }, esc(label)));
    el.append(ctl.info);
    if (kind === "slider") buildSlider(ctl, opts);
    else if (kind === "select") buildSelect(ctl, opts);
    else ctl.body = el.appendChild(h("div", { class: "sttm-choices", role: "radiogroup" }));
  }
  ctl.on = (fn) => ctl.listeners.push(fn);
  ctl.set = (upd, fromUser) => applyUpdate(ctl, upd, fromUser);
  if (kind === "radio") setChoices(ctl, opts.choices || [], opts.value);
  if (opts.info) ctl.info.textContent = opts.info;
  return ctl;
}

function buildSlider(ctl, { min, max, step, value }) {
  const row = ctl.el.appendChild(h("div", { class: "sttm-slide" }));
  ctl.range = h("input", { type: "range", min, max, step, value, "aria-label": ctl.el.id });
  ctl.number = h("input", { type: "number", min, max, step, value });
  row.append(ctl.range, ctl.number);
  ctl.range.addEventListener("input", () => ctl.set({ value: Number(ctl.range.value) }, true));
  ctl.number.addEventListener("change", () => { // a typed value snaps to the slider's steps
    const v = Number(ctl.number.value), snapped = Number((Math.round(v / step) * step).toFixed(6));
    if (Number.isFinite(v)) ctl.set({ value: Math.min(max, Math.max(min, snapped)) }, true);
  });
}

function buildSelect(ctl, { choices, disabled, value }) {
  ctl.input = ctl.el.appendChild(h("select", { "aria-label": ctl.el.id }));
  for (const name of choices) {
    const o = h("option", { value: name }, esc(name));
    if (disabled && disabled[name]) { o.disabled = true; o.title = disabled[name]; }
    ctl.input.append(o);
  }
  ctl.input.value = value;
  ctl.input.addEventListener("change", () => ctl.set({ value: ctl.input.value }, true));
}

function setChoices(ctl, choices, value) {
  ctl.body.innerHTML = "";
  ctl.radios = choices.map((name) => {
    const lab = h("label", {}, ""), input = h("input", { type: "radio", name: ctl.el.id, value: name });
    input.checked = name === value;
    input.disabled = ctl.disabled === true;
    input.addEventListener("change", () => { if (input.checked) ctl.set({ value: name }, true); });
    lab.append(input, document.createTextNode(name));
    ctl.body.append(lab);
    return input;
  });
}

/** Gradio's update semantics: a new value fires the listeners (once, if it changed). */
function applyUpdate(ctl, upd, fromUser) {
  if (!upd) return;
  if (upd.choices) { setChoices(ctl, upd.choices, upd.value !== undefined ? upd.value : ctl.value); }
  if (upd.interactive !== undefined) {
    ctl.disabled = !upd.interactive;
    for (const i of [ctl.input, ctl.range, ctl.number, ...(ctl.radios || [])]) if (i) i.disabled = ctl.disabled;
    ctl.el.classList.toggle("off", ctl.disabled);
  }
  if (upd.info !== undefined) ctl.info.textContent = upd.info || "";
  if (upd.visible !== undefined) ctl.el.hidden = !upd.visible;
  if (upd.value === undefined || upd.value === null) return;
  const changed = upd.value !== ctl.value;
  ctl.value = upd.value;
  if (ctl.range) { ctl.range.value = String(upd.value); ctl.number.value = String(upd.value); }
  else if (ctl.kind === "check") ctl.input.checked = Boolean(upd.value);
  else if (ctl.kind === "select") ctl.input.value = upd.value;
  else if (ctl.radios) ctl.radios.forEach((r) => { r.checked = r.value === upd.value; });
  if (changed || fromUser) for (const fn of ctl.listeners) fn(ctl.value);
}

const staticPage = {
  config: null, c: {}, tables: {}, video: null,

  /** Read the config, build the page, load the first video. */
  start() {
    const config = this.config = JSON.parse(document.getElementById("sttm-config").textContent);
    document.querySelector("#sttm-header h1").textContent = config.title;
    document.querySelector("#sttm-header p").innerHTML = config.tagline;
    mountLab(document.getElementById("sttm-static-lab"), { protocol: config.protocol });
    this.buildControls(config);
    this.buildExamples(config);
    this.buildModelPanels(config);
    app.requestServer = () => this.serve();
    this.wire();
    if (config.videos.length) this.pick(config.videos[0].name);
  },

  /** The controls, each as the protocol describes it (kind, label, help, range or choices,
   * default, page id), by the protocol's names. */
  buildControls(config) {
    const P = config.protocol, L = P.labels, box = document.getElementById("sttm-static-controls");
    const own = { mode: { label: "" }, root: { choices: [] }, method: { disabled: config.absent_methods } };
    const c = this.c = {};
    for (const [name, spec] of Object.entries(P.controls)) {
      const opts = { ...spec, value: spec.default, ...own[name] };
      c[name] = makeControl(spec.kind, spec.elem_id, opts.label, opts);
    }
    c.budget.el.hidden = true;
    const hist = (which) => { const el = h("div", { id: `sttm-hist-${which}`, class: "sttm-root" }); mountHistogram(el, which); return el; };
    c.tauS.el.append(hist("spatial"));
    c.tauT.el.append(hist("temporal"));
    const presets = h("div", { id: "sttm-presets", class: "sttm-ctl" }, `<span class="sttm-label">${esc(L.presets)}</span>`);
    const row = presets.appendChild(h("div", { class: "sttm-presets" }));
    this.presetButtons = Object.entries(config.protocol.presets).map(([name, [tauS, tauT]]) => {
      const b = row.appendChild(h("button", { type: "button" }, esc(name)));
      b.addEventListener("click", () => this.preset(tauS, tauT));
      return b;
    });
    presets.append(h("div", { class: "sttm-info" }, esc(config.preset_note)));
    c.method.el.append(h("div", { class: "sttm-info sttm-absent" }, esc(Object.values(config.absent_methods).join(" · "))));
    box.append(c.mode.el, c.budget.el, c.tauS.el, c.temporal.el, c.tauT.el, c.root.el, presets, c.method.el,
               h("div", { id: "sttm-fixed" }, esc(config.fixed)));
  },

  buildExamples(config) {
    const label = document.querySelector("#sttm-example span"), select = document.querySelector("#sttm-example select");
    label.textContent = config.protocol.labels.example;
    for (const v of config.videos) select.append(h("option", { value: v.name }, esc(v.title)));
    select.addEventListener("change", () => this.pick(select.value));
  },

  buildModelPanels(config) {
    const el = document.getElementById("sttm-model-panels");
    for (const [name, why] of Object.entries(config.model_panels)) {
      el.append(h("div", { "data-panel": name }, `<b>${esc(name)}</b> · ${esc(why)}`));
    }
  },

  /** ui.py's _wire, with plain listeners. */
  wire() {
    const c = this.c;
    c.tauS.on((v) => app.control({ tauS: v }));
    c.tauT.on((v) => app.control({ tauT: v }));
    c.root.on((v) => app.control({ root: v }));
    for (const name of ["mode", "method", "temporal"]) c[name].on(() => this.controlState());
    c.budget.on((budget) => this.apply(app.budgetMoved({ budget })));
  },

  controlState() {
    const c = this.c;
    this.apply(app.controlState({ mode: c.mode.value, method: c.method.value,
                                  temporal: c.temporal.value, budget: c.budget.value }));
  },

  /** An action's answer: an update per control name. */
  apply(updates) { for (const [name, u] of Object.entries(updates)) this.c[name].set(u); },

  /** A preset: one re-merge; the four controls then follow (no-ops for the page). */
  preset(tauS, tauT) {
    this.apply(app.preset({ tauS, tauT }));
  },

  /** Load a video: its payload (evidence, frames), then the root grids of its pyramid. */
  async pick(name) {
    const video = this.config.videos.find((v) => v.name === name);
    if (!video) return;
    document.querySelector("#sttm-example select").value = name;
    this.video = video;
    app.loading(`Loading ${video.title}…`);
    let payload;
    try { payload = await (await fetch(video.payload)).json(); }
    catch (err) { app.loading(`Could not load ${video.title}: ${err}`); return; }
    if (this.video !== video) return; // another was picked meanwhile
    const choices = payload.evidence.sizes.map(([hh, ww]) => `${hh}×${ww}`);
    const old = this.c.root.radios ? this.c.root.radios.findIndex((r) => r.checked) : -1;
    const level = Math.min(old >= 0 ? old : 1, choices.length - 1);
    app.load(payload);
    this.c.root.set({ choices, value: choices[level] });
    app.loading(null);
  },

  /** What the app's server would send (handlers.sync) for the page's current need: the
   * video's budget tables ("table|root|temporal") or a baseline's tokens ("tokens|method|b"). */
  async serve() {
    const video = this.video, need = app.current && app.current.need;
    if (!video || !need) return;
    let message = null;
    try {
      if (need.startsWith("table|")) message = await this.file(video.tables);
      else if (need.startsWith("tokens|") && video.served[need.split("|")[1]]) {
        const [, method, b] = need.split("|"), budget = Number(b);
        const u = await this.file(video.served[method]);
        const k = Math.max(0, Math.min(u.budgets.length - 1, Math.round((budget - u.budgets[0]) / 0.01)));
        message = { video: u.video, tables: [], tokens: { ...u.sets[u.set[k]], budget } };
      }
    } catch (err) { app.loading(`Could not load this video's precomputed data: ${err}`); return; }
    if (!message) return;
    app.receive(message);
    this.controlState(); // as ui.py's served.change: the automatic τS / τT onto the sliders
  },

  /** One of the video's precomputed files (its tables, a served baseline's), fetched once. */
  file(url) {
    if (!this.tables[url]) {
      this.tables[url] = fetch(url).then((r) => {
        if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
        return r.json();
      });
      this.tables[url].catch(() => { delete this.tables[url]; }); // a later need tries again
    }
    return this.tables[url];
  },
};

if (typeof document !== "undefined") {
  window.STTM = { app, page: staticPage }; // for the console and the tests
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => staticPage.start());
  else staticPage.start();
}
