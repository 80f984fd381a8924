/* Canvas drawing of a token structure (merge.js) over a frame, and the legends.

The visual code (the same on the map, the all-frames grid and the chains plot):
  colour        by size: Okabe and Ito's palette (told apart with the common colour
                blindnesses; tests/test_lesson.py checks them simulated): 1 patch vermillion,
                4 yellow, 16 sky blue, ...; each box also
                shows its patch count (a cue without colour) where it is large enough;
                or by chain: one colour per output token, kept in every frame it spans
  solid fill    a token that is new in this frame: the model receives it here
  grey + stripes a token carried over from an earlier frame (merged in time by tauT): the model
                received it already, nothing new is sent for that region
  dark grey     a patch a baseline dropped (FastV)
  white ring    the token you clicked; yellow ring: the token under the pointer
*/
import { say } from "./words.js";


// round(log2(area)) -> colour (sttm_viz/draw.py GRANULARITY_PALETTE, the same). Okabe & Ito's colours, safe for
// protanopia, deuteranopia and tritanopia; neighbouring sizes never share a hue family
export const SIZE_PALETTE = ["#D55E00", "#0072B2", "#F0E442", "#CC79A7", "#56B4E9", "#E69F00",
                      "#009E73", "#000000", "#999999"];
// patches per box: the legend names sizes by count (the root grid is named as a grid)
export const SIZE_NAMES = ["1", "~2", "4", "~8", "16", "~32", "64", "~128", "≥ 256"];
const GOLDEN = 0.618033988749895;

export function sizeLevel(area) {
  return Math.max(0, Math.min(SIZE_PALETTE.length - 1, Math.round(Math.log2(Math.max(area, 1)))));
}
export function sizeColour(area) { return SIZE_PALETTE[sizeLevel(area)]; }
export function chainColour(id) {
  const hue = ((id * GOLDEN + 0.05) % 1) * 360;
  const sat = id % 2 === 0 ? 85 : 62, light = ((id >> 1) % 2 === 0) ? 52 : 40;
  return `hsl(${hue.toFixed(1)}, ${sat}%, ${light}%)`;
}

/** A similarity or threshold as text: `digits` decimals, more when rounding would make a
 * value below 1 read as 1.000 (the page never shows a number that hides a difference). */
export function fmtSim(v, digits = 3) {
  if (v === null || v === undefined) return "off";
  let d = digits, text = Number(v).toFixed(d);
  while (d < 8 && v < 1 && Number(text) >= 1) text = Number(v).toFixed(++d);
  return text;
}

/** Pixel edges of n equal cells over `size` pixels, rounded so they tile it. */
export function edges(n, size) {
  return Int32Array.from({ length: n + 1 }, (_, k) => Math.round((k * size) / n));
}

const patterns = new WeakMap();
function stripes(ctx, colour) {
  let byColour = patterns.get(ctx);
  if (!byColour) { byColour = new Map(); patterns.set(ctx, byColour); }
  if (!byColour.has(colour)) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const t = tile.getContext("2d");
    t.strokeStyle = colour; t.lineWidth = 2;
    t.beginPath(); t.moveTo(-2, 10); t.lineTo(10, -2); t.moveTo(-2, 2); t.lineTo(2, -2);
    t.moveTo(6, 10); t.lineTo(10, 6); t.stroke();
    byColour.set(colour, ctx.createPattern(tile, "repeat"));
  }
  return byColour.get(colour);
}

/** Draw frame t of a token structure on ctx over the rectangle (0, 0, w, h).
 * opts: image (HTMLImageElement or null), step (1 patch grid, 2 after tauS, 3 after tauT),
 * colourBy ("size" | "chain"), selected, hover (token ids or -1), thin (small tiles).
 * Returns the patch counts written on the boxes (none on the patch grid or thin tiles). */
export function drawFrame(ctx, tokens, t, w, h, opts) {
  const { H, W } = tokens;
  const ye = edges(H, h), xe = edges(W, w);
  ctx.save();
  ctx.clearRect(0, 0, w, h);
  if (opts.image && opts.image.complete && opts.image.naturalWidth) ctx.drawImage(opts.image, 0, 0, w, h);
  else { ctx.fillStyle = "#333"; ctx.fillRect(0, 0, w, h); }
  const line = opts.thin ? 0.75 : 1;
  if (opts.step === 1) {
    ctx.strokeStyle = "rgba(255,255,255,0.55)"; ctx.lineWidth = line;
    ctx.beginPath();
    for (let y = 0; y <= H; y++) { ctx.moveTo(0, ye[y] + 0.5); ctx.lineTo(w, ye[y] + 0.5); }
    for (let x = 0; x <= W; x++) { ctx.moveTo(xe[x] + 0.5, 0); ctx.lineTo(xe[x] + 0.5, h); }
    ctx.stroke();
    ctx.restore();
    return [];
  }
  const b = tokens.spatialBoxes, S = tokens.numSpatial;
  const rects = [];
  for (let s = 0; s < S; s++) {
    if (b[5 * s] !== t) continue;
    const [y0, x0, y1, x1] = [b[5 * s + 1], b[5 * s + 2], b[5 * s + 3], b[5 * s + 4]];
    rects.push({ s, token: tokens.spatialToToken[s], area: (y1 - y0) * (x1 - x0),
                 x: xe[x0], y: ye[y0], w: xe[x1] - xe[x0], h: ye[y1] - ye[y0] });
  }
  for (const r of rects) {
    const carried = opts.step === 3 && r.token >= 0 && tokens.first[r.token] < t;
    const colour = opts.colourBy === "chain" && r.token >= 0 ? chainColour(r.token) : sizeColour(r.area);
    if (r.token < 0) { // dropped by a baseline
      ctx.fillStyle = "rgba(15,15,15,0.78)"; ctx.fillRect(r.x, r.y, r.w, r.h);
    } else if (carried) {
      ctx.fillStyle = "rgba(30,30,30,0.62)"; ctx.fillRect(r.x, r.y, r.w, r.h);
      ctx.fillStyle = stripes(ctx, opts.colourBy === "chain" ? colour : "rgba(255,255,255,0.55)");
      ctx.fillRect(r.x, r.y, r.w, r.h);
    } else {
      ctx.globalAlpha = 0.38; ctx.fillStyle = colour; ctx.fillRect(r.x, r.y, r.w, r.h);
      ctx.globalAlpha = 1;
    }
  }
  ctx.strokeStyle = "rgba(0,0,0,0.75)"; ctx.lineWidth = line;
  for (const r of rects) ctx.strokeRect(r.x + 0.5, r.y + 0.5, r.w - 1, r.h - 1);
  const labels = opts.thin ? [] : sizeLabels(ctx, rects);
  for (const [id, ring] of [[opts.hover, "#ffd400"], [opts.selected, "#ffffff"]]) {
    if (id === undefined || id === null || id < 0) continue;
    for (const r of rects) {
      if (r.token !== id) continue;
      const lw = opts.thin ? 2 : 3;
      ctx.lineWidth = lw + 2; ctx.strokeStyle = "rgba(0,0,0,0.85)";
      ctx.strokeRect(r.x + lw / 2, r.y + lw / 2, r.w - lw, r.h - lw);
      ctx.lineWidth = lw; ctx.strokeStyle = ring;
      ctx.strokeRect(r.x + lw / 2, r.y + lw / 2, r.w - lw, r.h - lw);
    }
  }
  ctx.restore();
  return labels;
}

/** Each box's patch count in its corner, where it fits: box size without colour. The
 * numbers are stamped from small pre-drawn bitmaps (outlined text costs a layout per call:
 * ~14 ms a paint on a throttled phone). Returns the texts drawn. */
function sizeLabels(ctx, rects) {
  const scale = Math.max(1, ctx.getTransform().a);
  const drawn = [];
  for (const r of rects) {
    if (r.w < 16 || r.h < 14 || r.token < 0) continue;
    const text = String(r.area), sprite = labelSprite(text, scale);
    ctx.drawImage(sprite, r.x + 1, r.y + 1, sprite.width / scale, sprite.height / scale);
    drawn.push(text);
  }
  return drawn;
}

const SPRITES = new Map(); // "text@scale" -> canvas: white bold 10px digits outlined in black
function labelSprite(text, scale) {
  const key = `${text}@${scale}`;
  let c = SPRITES.get(key);
  if (c) return c;
  c = document.createElement("canvas");
  const font = "bold 10px sans-serif";
  const measure = c.getContext("2d");
  measure.font = font;
  c.width = Math.ceil((measure.measureText(text).width + 6) * scale);
  c.height = Math.ceil(15 * scale);
  const g = c.getContext("2d");
  g.scale(scale, scale);
  g.font = font; g.textBaseline = "top"; g.lineWidth = 3; g.lineJoin = "round";
  g.strokeStyle = "rgba(0,0,0,0.8)"; g.fillStyle = "#fff";
  g.strokeText(text, 2, 2); g.fillText(text, 2, 2);
  SPRITES.set(key, c);
  return c;
}

/** Legend HTML of the map and the grid for a step and colouring. */
export function legendHTML(step, colourBy, areas, hasDropped) {
  const swatch = (style, text) => `<span class="sttm-key"><i style="${style}"></i>${text}</span>`;
  if (step === 1) return swatch("background:transparent;border:1px solid #999", "one patch = one token (nothing merged)");
  const parts = [];
  if (colourBy === "chain") parts.push(swatch("background:linear-gradient(90deg,#e41a1c,#377eb8,#1b9e77)", "one colour per token (a chain keeps it)"));
  else {
    const levels = [...new Set(areas.map(sizeLevel))].sort((a, b) => a - b);
    parts.push(`<span class="sttm-key" title="${say("legend_approx")}">${say("legend_sizes")}</span>`);
    for (const l of levels) parts.push(swatch(`background:${SIZE_PALETTE[l]}`, SIZE_NAMES[l]));
  }
  if (step === 3) parts.push(swatch("background:repeating-linear-gradient(135deg,#444 0 3px,#bbb 3px 5px)", "carried over from an earlier frame (merged by τT: nothing new sent)"));
  if (hasDropped) parts.push(swatch("background:#222", "dropped"));
  parts.push(swatch("background:transparent;border:2px solid #fff;box-shadow:0 0 0 1px #000", "clicked"));
  return parts.join("");
}

// --- cheap redraws: a slider move must not make the browser lay the page out more than once --
/** el.innerHTML = html, unless it already is: an unchanged note costs no parse, no layout. */
export function setHTML(el, html) {
  if (el.__sttmHTML === html) return;
  el.__sttmHTML = html;
  el.innerHTML = html;
}

// widths read while drawing come from a ResizeObserver, not from el.clientWidth (which forces
// a layout when the page has just been changed: once per view and move on a slow phone)
const widths = new WeakMap();
let sizer = null;
let widthsChanged = null;
/** Who redraws when a measured width changes (the page's state, app.js). */
export function onWidthsChange(fn) { widthsChanged = fn; }
/** el's clientWidth as of the last layout; a change redraws every view. */
export function widthOf(el) {
  if (!widths.has(el)) {
    sizer = sizer || new ResizeObserver((entries) => {
      let changed = false;
      for (const e of entries) {
        const w = e.target.clientWidth;
        changed = changed || w !== widths.get(e.target);
        widths.set(e.target, w);
      }
      if (changed && widthsChanged) widthsChanged();
    });
    widths.set(el, el.clientWidth);
    sizer.observe(el);
  }
  return widths.get(el);
}
