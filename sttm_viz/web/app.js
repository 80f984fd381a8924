/* The page's state: one video's evidence and frames, the controls, the current tokens, and
the views that draw them. A bridge (gradio.js in the app, static.js on the static page) calls
its actions with the controls' values by name (no server round trip), so a moved slider
re-merges and redraws in a few ms; an action's answer is, per control name, what that control
should show ({value, interactive, info, visible}), which the bridge applies.

Server messages: `load(payload)` once per video and feature source (sttm_viz.payload), and
`receive(message)` with what only the server computes (budget tables, a baseline's tokens),
tagged with the video id they belong to.
*/
import { carriedShare, merge, prepare, tokensFrom } from "./merge.js";
import { fmtSim, onWidthsChange } from "./draw.js";
import { say, useWords } from "./words.js";

const PROTOCOL_VERSION = 2; // sttm_viz/protocol.py: the one this page is written for
export const app = {
  payload: null, ev: null, images: [], tables: {}, served: null,
  settings: {},   // the page's controls (names as here, values as the protocol's defaults)
  protocol: null, // sttm_viz/protocol.py: controls, methods, modes, words, presets
  methods: {},    // label -> name (the method menu)
  labels: {},     // name -> label
  view: { frame: 0, step: 3, colourBy: "size", selected: null, hover: -1, playing: false },
  tokens: null, current: null, mergeKey: "", requested: {},
  renders: 0, merges: 0, // paints and re-merges so far (the lab's tests count them)
  requestServer: null, // set by the hidden server channel: asks for what `effective` needs
  views: [],

  /** The page protocol (sent with the page; see sttm_viz/protocol.py). */
  useProtocol(protocol) {
    if (protocol.version !== PROTOCOL_VERSION) {
      throw new Error(`page protocol ${protocol.version}: this page reads ${PROTOCOL_VERSION}`);
    }
    this.protocol = protocol;
    this.methods = protocol.menu;
    this.labels = Object.fromEntries(Object.values(protocol.methods).map((m) => [m.name, m.label]));
    useWords(protocol.words);
    this.control(Object.fromEntries(Object.entries(protocol.controls).map(([name, c]) => [name, c.default])));
  },

  /** A control's line of help (the protocol's controls, by name). */
  info(name) { return this.protocol.controls[name].info; },

  /** A method's label in the menu (the current method's by default). */
  label(name) {
    name = name || this.settings.method;
    return this.labels[name] || name;
  },

  /** What the page knows of a method (its descriptor in the protocol). */
  method(name) {
    name = name || this.settings.method;
    return this.protocol.methods[name] || { name, label: name, takes: "budget", computed: "server",
                                            quadtree: false, temporal: null, query_aware: false };
  },

  /** A Gradio control moved (labels as the page shows them). */
  control(partial) {
    const next = { ...this.settings };
    for (const [k, v] of Object.entries(partial)) {
      if (v === undefined || v === null) continue;
      if (k === "mode") next.mode = this.protocol.modes[v] || v;
      else if (k === "method") next.method = this.methods[v] || v;
      else if (k === "tauS" || k === "tauT") next[k] = clampTau(Number(v), this.settings[k]);
      else if (k === "budget") next[k] = Number(v);
      else if (k === "temporal") next.temporal = Boolean(v);
      else next[k] = v;
    }
    const changed = JSON.stringify(next) !== JSON.stringify(this.settings);
    this.settings = next;
    if (changed) this.refresh();
  },

  /** Mode, method or temporal merging changed: what the other controls should show
   * ({mode, tauS, tauT, temporal, budget, root}: each an update {value, interactive, info,
   * visible}). */
  controlState({ mode, method, temporal, budget }) {
    // a baseline always keeps the budget: the Mode radio says so while one is picked, and
    // the mode chosen for STTM comes back with STTM (the radio's shown value is not taken)
    const byHand = (name) => this.method(name).takes === "thresholds"; // STTM: either mode
    const fromSTTM = byHand(this.settings.method);
    const toSTTM = byHand(this.methods[method] || method);
    this.control({ mode: fromSTTM && toSTTM ? mode : undefined, method, temporal, budget });
    const s = this.settings, d = this.method(), baseline = !byHand(s.method);
    const auto = s.mode === "budget" || baseline;
    const why = baseline ? say("keeps_budget", { method: this.label() }) : say("set_by_budget");
    const upd = (o) => o;
    const autoValues = this.autoThresholds();
    const tauS = auto ? upd({ interactive: false, info: autoInfo("τS", why, autoValues, "tauS") })
      : upd({ interactive: true, info: this.info("tauS") });
    const tauTOff = !auto && !s.temporal;
    const tauT = auto ? upd({ interactive: false, info: autoInfo("τT", why, autoValues, "tauT") })
      : upd({ interactive: !tauTOff, info: tauTOff ? say("tau_t_off") : this.info("tauT") });
    if (auto && autoValues) { // only a threshold the slider can hold (−1 / 1.01: "not used")
      if (isTau(autoValues.tauS)) tauS.value = autoValues.tauS;
      if (isTau(autoValues.tauT)) tauT.value = autoValues.tauT;
    }
    if (!auto) { // back on the sliders: the page's values, always in [0, 1]
      tauS.value = s.tauS;
      tauT.value = s.tauT;
    }
    const tree = d.quadtree;
    const modes = this.protocol.modes;
    const modeLabel = Object.keys(modes).find((k) => modes[k] === (baseline ? "budget" : s.mode));
    return { mode: { interactive: !baseline, value: modeLabel, info: baseline ? say("baseline_mode") : null },
             tauS, tauT,
             temporal: { interactive: d.temporal === "user" && !baseline },
             budget: { visible: auto },
             root: { interactive: tree, info: tree ? this.info("root") : say("no_quadtree", { method: this.label() }) } };
  },

  /** The budget slider moved: the automatic thresholds for the τS / τT sliders. */
  budgetMoved({ budget }) {
    this.control({ budget });
    const values = this.autoThresholds();
    if (!values) return {};
    const show = (name, v) => ({ ...(isTau(v) ? { value: v } : {}),
                                 info: autoInfo(name === "tauS" ? "τS" : "τT", say("set_by_budget"), values, name) });
    return { tauS: show("tauS", values.tauS), tauT: show("tauT", values.tauT) };
  },

  /** A preset (the family's paper thresholds): one re-merge, and what the four controls it
   * sets should show. */
  preset({ tauS, tauT }) {
    const modes = this.protocol.modes, mode = Object.keys(modes).find((k) => modes[k] === "thresholds");
    this.control({ mode, tauS, tauT, temporal: true });
    return { mode: { value: mode }, tauS: { value: tauS }, tauT: { value: tauT }, temporal: { value: true } };
  },

  /** The thresholds the budget search chose for the current budget, or null. */
  autoThresholds() {
    const eff = this.current;
    return eff && eff.kind === "merge" && eff.source === "budget" ? { tauS: eff.tauS, tauT: eff.tauT } : null;
  },

  /** A server job for the map is under way (a video, a merge layer); null: it ended. */
  loading(message) {
    this.loadingNote = message || "";
    this.render("loading");
  },

  /** A new video (or feature source): evidence, frames; every old selection cleared. */
  load(payload) {
    if (!payload || !payload.evidence) return;
    this.payload = payload;
    this.loadingNote = "";
    this.ev = prepare(payload.evidence);
    this.tables = {};
    this.served = null;
    this.requested = {};
    this.curves = {};
    this.images = payload.frames.map((src) => {
      const img = new Image();
      img.onload = () => this.render("image");
      img.src = src;
      return img;
    });
    this.view = { ...this.view, frame: 0, selected: null, hover: -1, playing: false, cursor: null };
    this.stopPlaying();
    this.mergeKey = "";
    this.shownKey = "";
    this.refresh();
    const t = this.teachingFrame();
    if (t) this.setView({ frame: t });
  },

  /** The frame a new video opens on: the earliest where τT carries over about the most (within
   * 5% of the frame) and some tokens are new, so the first view shows both halves of the merge;
   * frame 0 has nothing to carry over. */
  teachingFrame() {
    const tk = this.tokens;
    if (!tk || tk.served || tk.T < 2) return 0;
    const shares = Array.from({ length: tk.T }, (_, t) => (t ? carriedShare(tk, t) : 0));
    // a frame with new tokens too (both kinds of box side by side), else any
    const mixed = shares.map((c, t) => (t && tk.newPerFrame[t] > 0 ? c : 0));
    const pool = Math.max(...mixed) > 0 ? mixed : shares;
    const top = Math.max(...pool);
    return top > 0 ? pool.findIndex((c) => c >= top - 0.05) : 0;
  },

  /** A server message for the current video: budget tables, a baseline's tokens. */
  receive(message) {
    if (!message || !this.payload || message.video !== this.payload.id) return;
    for (const table of message.tables || []) this.tables[`${table.root}|${table.temporal}`] = table;
    if (message.tokens) this.served = message.tokens;
    this.shownKey = "";
    this.refresh();
  },

  rootIndex() {
    if (!this.ev) return 1;
    const names = this.ev.sizes.map(([h, w]) => `${h}×${w}`);
    const k = names.indexOf(String(this.settings.root).replace("x", "×"));
    return k >= 0 ? k : Math.min(1, this.ev.L - 1);
  },

  /** What the current controls ask for: a merge at given thresholds, the server's tokens,
   * or a wait (with the reason). */
  effective() {
    const s = this.settings, ev = this.ev;
    const root = this.rootIndex();
    const d = this.method();
    if (d.takes === "thresholds" && s.mode === "thresholds") {
      return { kind: "merge", source: "thresholds", tauS: s.tauS, tauT: s.temporal ? s.tauT : null, root };
    }
    if (d.computed === "page") { // STTM's merge at the budget: the budget table's thresholds
      const temporal = { on: true, off: false }[d.temporal] ?? s.temporal;
      const r = d.quadtree ? root : ev.L - 1;
      const table = this.tables[`${r}|${temporal}`];
      if (!table) return { kind: "wait", need: `table|${r}|${temporal}`, why: say("finding_tables") };
      const k = Math.max(0, Math.min(table.budgets.length - 1, Math.round((s.budget - table.budgets[0]) / 0.01)));
      return { kind: "merge", source: "budget", tauS: table.tau_s[k], tauT: table.tau_t[k], root: r,
               target: table.budgets[k], keep: table.keep[k] };
    }
    const t = this.served;
    const asks = d.query_aware; // its tokens follow a question: no request of our own
    if (t && t.method === s.method && (asks || Math.abs(t.budget - s.budget) < 1e-9)) {
      return { kind: "served", method: s.method };
    }
    if (asks) return { kind: "wait", why: say(this.payload.has_model === false ? "asks_model" : "asks_question", { method: this.label() }) };
    return { kind: "wait", need: `tokens|${s.method}|${s.budget}`, why: say("computing_tokens", { method: this.label() }) };
  },

  /** Recompute the tokens for the current settings (if they changed) and redraw. */
  refresh() {
    if (!this.ev) { this.render("settings"); return; }
    const eff = this.current = this.effective();
    if (eff.need && !this.requested[eff.need] && this.requestServer) {
      this.requested[eff.need] = true; // ask once; the answer arrives through `receive`
      setTimeout(() => this.requestServer(), 0);
    }
    let key = "wait";
    if (eff.kind === "merge") key = `m|${eff.tauS}|${eff.tauT}|${eff.root}`;
    else if (eff.kind === "served") key = `s|${this.served.method}|${this.served.budget}|${this.served.boxes.length}`;
    if (key !== this.mergeKey) {
      this.mergeKey = key;
      if (eff.kind === "merge") {
        this.tokens = merge(this.ev, eff.tauS, eff.tauT, eff.root);
        this.merges++;
      }
      else if (eff.kind === "served") {
        const boxes = Int32Array.from(this.served.boxes);
        this.tokens = tokensFrom(this.ev, boxes, Int32Array.from(this.served.to_token), null, { served: eff.method });
      } else this.tokens = null;
    }
    // a control that changes nothing shown (e.g. τS in budget mode) draws nothing
    const shown = `${key}|${JSON.stringify(eff)}|${this.settings.method}|${this.settings.budget}`;
    if (shown === this.shownKey) return;
    this.shownKey = shown;
    this.render("settings");
  },

  /** The output token at the clicked patch, under the current tokens (-1: none). */
  selectedToken() {
    const sel = this.view.selected, tk = this.tokens;
    if (!sel || !tk) return -1;
    return tk.tokenMap[(sel.t * tk.H + sel.y) * tk.W + sel.x];
  },

  setView(partial) {
    this.view = { ...this.view, ...partial };
    this.render("view");
  },

  register(view) { this.views.push(view); view.render(this, "mount"); },

  render(reason) {
    this.renders++;
    for (const v of this.views) {
      try { v.render(this, reason); } catch (err) { console.error("STTM view", err); }
    }
  },

  play() {
    if (!this.tokens || this.timer) return;
    this.view.playing = true;
    this.timer = setInterval(() => {
      const T = this.tokens ? this.tokens.T : 1;
      this.setView({ frame: (this.view.frame + 1) % T });
    }, 300);
    this.render("view");
  },
  stopPlaying() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.view.playing = false;
  },
};

function autoInfo(name, why, values, key) {
  if (!values) return `${why}`;
  const v = values[key];
  if (v !== null && !isTau(v)) return say("auto_not_used", { why, name }); // e.g. −1: no quadtree
  return `${why}: ${fmtSim(v)}`;
}

/** A value the τ sliders (0–1) can hold. The budget search may choose thresholds outside
 * it (−1: merge everything / no spatial level; above 1: off), which must never reach a
 * slider: Gradio refuses a value out of its range on every later server call. */
function isTau(v) { return typeof v === "number" && v >= 0 && v <= 1; }

/** A typed or stored τ, clamped into the sliders' range (NaN: the previous value). */
function clampTau(v, previous) {
  if (Number.isNaN(v)) return previous;
  return Math.min(1, Math.max(0, v));
}

/** Lazily, once visible: each view's render is cheap when it has nothing new to draw. */
export const isShown = (el) => !!(el && el.offsetParent !== null && el.getClientRects().length);

onWidthsChange(() => app.render("resize"));
