/* The static page's bridge: plain HTML controls wired to STTM.app, playing Gradio's role
(sttm-studio export writes the page; no server behind it).

Flow: the page's words arrive as JSON (#sttm-config, from sttm_viz.guide and the method menu)
-> build the controls -> mount the lab and the histograms (lab.js, plots.js) -> load the first
video's payload.json (what the app's `load` sends). A control moved calls STTM.app as ui.py's
JavaScript does (control, controlState, budgetMoved); their Gradio-style updates
({__type__: "update", value, interactive, info, visible}) are applied to the controls here;
a value set that way fires the control's listeners, as Gradio's .change does. The page asks
`requestServer` for what the app's server sends (handlers.sync): budget tables come from the
video's tables.json, the uniform-pooling baseline's tokens from its uniform.json (both computed
at export).
*/
(function (root) {
  "use strict";
  const STTM = root.STTM || (root.STTM = {});
  if (STTM.staticPage) return;

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

  function buildSelect(ctl, { options, disabled, value }) {
    ctl.input = ctl.el.appendChild(h("select", { "aria-label": ctl.el.id }));
    for (const name of options) {
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

  STTM.staticPage = {
    config: null, c: {}, tables: {}, video: null,

    /** Read the config, build the page, load the first video. */
    start() {
      const config = this.config = JSON.parse(document.getElementById("sttm-config").textContent);
      const app = STTM.app;
      document.querySelector("#sttm-header h1").textContent = config.title;
      document.querySelector("#sttm-header p").innerHTML = config.tagline;
      STTM.mountLab(document.getElementById("sttm-static-lab"), { protocol: config.protocol });
      this.buildControls(config, app);
      this.buildExamples(config);
      this.buildModelPanels(config);
      app.requestServer = () => this.serve();
      this.wire(app, config);
      if (config.videos.length) this.pick(config.videos[0].name);
    },

    buildControls(config, app) {
      const P = config.protocol, L = P.labels, s = app.settings, box = document.getElementById("sttm-static-controls");
      const modeLabel = Object.keys(P.modes).find((k) => P.modes[k] === s.mode);
      const [tmin, tmax] = P.ranges.tau, [bmin, bmax] = P.ranges.budget;
      const c = this.c = {
        mode: makeControl("radio", "sttm-mode", "", { choices: Object.keys(P.modes), value: modeLabel }),
        budget: makeControl("slider", "sttm-budget", L.budget, { min: bmin, max: bmax, step: 0.01, value: s.budget, info: P.help.budget }),
        tauS: makeControl("slider", "sttm-tau-s", L.tau_s, { min: tmin, max: tmax, step: 0.01, value: s.tauS, info: P.help.tau_s }),
        temporal: makeControl("check", "sttm-temporal", P.help.temporal, { value: s.temporal }),
        tauT: makeControl("slider", "sttm-tau-t", L.tau_t, { min: tmin, max: tmax, step: 0.01, value: s.tauT, info: P.help.tau_t }),
        root: makeControl("radio", "sttm-root", L.root, { choices: [], value: s.root, info: P.help.root }),
        method: makeControl("select", "sttm-method", L.method, {
          options: Object.keys(P.menu), disabled: config.absent_methods,
          value: app.labels[s.method], info: P.help.method }),
      };
      c.budget.el.hidden = true;
      const hist = (which) => { const el = h("div", { id: `sttm-hist-${which}`, class: "sttm-root" }); STTM.mountHistogram(el, which); return el; };
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
    wire(app, config) {
      const c = this.c;
      c.tauS.on((v) => app.control({ tauS: v }));
      c.tauT.on((v) => app.control({ tauT: v }));
      c.root.on((v) => app.control({ root: v }));
      for (const name of ["mode", "method", "temporal"]) c[name].on(() => this.controlState());
      c.budget.on((b) => this.apply(app.budgetMoved(b), [c.tauS, c.tauT]));
    },

    controlState() {
      const c = this.c, app = STTM.app;
      const upd = app.controlState(c.mode.value, c.method.value, c.temporal.value, c.budget.value);
      this.apply(upd, [c.mode, c.tauS, c.tauT, c.temporal, c.budget, c.root]);
    },

    apply(updates, controls) { updates.forEach((u, k) => controls[k].set(u)); },

    /** A preset: one re-merge; the four controls then follow (no-ops for the page). */
    preset(tauS, tauT) {
      const c = this.c, mode = Object.keys(this.config.protocol.modes)[0];
      STTM.app.control({ mode, tauS, tauT, temporal: true });
      c.mode.set({ value: mode }); c.tauS.set({ value: tauS }); c.tauT.set({ value: tauT }); c.temporal.set({ value: true });
    },

    /** Load a video: its payload (evidence, frames), then the root grids of its pyramid. */
    async pick(name) {
      const app = STTM.app, video = this.config.videos.find((v) => v.name === name);
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
     * video's budget tables ("table|root|temporal") or a baseline's tokens ("tokens|uniform|b"). */
    async serve() {
      const app = STTM.app, video = this.video, need = app.current && app.current.need;
      if (!video || !need) return;
      let message = null;
      try {
        if (need.startsWith("table|")) message = await this.file(video, "tables");
        else if (need.startsWith("tokens|uniform|")) {
          const u = await this.file(video, "uniform"), budget = Number(need.split("|")[2]);
          const k = Math.max(0, Math.min(u.budgets.length - 1, Math.round((budget - u.budgets[0]) / 0.01)));
          message = { video: u.video, tables: [], tokens: { ...u.sets[u.set[k]], budget } };
        }
      } catch (err) { app.loading(`Could not load this video's precomputed data: ${err}`); return; }
      if (!message) return;
      app.receive(message);
      this.controlState(); // as ui.py's served.change: the automatic τS / τT onto the sliders
    },

    /** One of the video's precomputed files (tables, uniform), fetched once. */
    file(video, which) {
      const key = `${video.name}|${which}`;
      if (!this.tables[key]) {
        this.tables[key] = fetch(video[which]).then((r) => {
          if (!r.ok) throw new Error(`${video[which]}: HTTP ${r.status}`);
          return r.json();
        });
        this.tables[key].catch(() => { delete this.tables[key]; }); // a later need tries again
      }
      return this.tables[key];
    },
  };

  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => STTM.staticPage.start());
    else STTM.staticPage.start();
  }
})(typeof window !== "undefined" ? window : globalThis);
