/* STTM's merge, re-thresholded in the page from a video's evidence (sttm_core/evidence.py).

The server sends, once per video and feature source, every similarity a threshold tests: each
quadtree node's similarity to each of its child slots, and each nested pair of nodes of
consecutive frames. From those numbers this file rebuilds exactly the tokens of
sttm_core.merge_video_tokens (temporal_mode "official"): the coarse-to-fine search (a node
stops iff its smallest child similarity >= tauS; leaves always stay), the token order
(t, y0, x0), the candidate pairs (nested tokens of frames t, t+1) and the official union-find's
label spreading, and, where the evidence says so (Qwen3-VL), keep_every_frame.
tests/test_page_merge.py runs this in Chromium against the Python engine.

torch compares a float32 similarity with a Python float threshold in float32, so thresholds
are rounded with Math.fround before comparing. A threshold of null turns its half off (tauS
above 1 does too).
Shape legend: T frames, H x W leaf grid, h x w a level's grid, S spatial tokens, N tokens.
*/
(function (root) {
  "use strict";
  const STTM = root.STTM || (root.STTM = {});
  if (STTM.mergeLoaded) return; // the page may include this file more than once
  STTM.mergeLoaded = true;

  /** Geometry of one axis of the pyramid (sttm_core.quadtree.Axis), lists coarse -> fine. */
  function buildAxis(lengths) {
    const L = lengths.length;
    const start = new Array(L), end = new Array(L), parent = new Array(L), first = new Array(L);
    const leaf = lengths[L - 1];
    start[L - 1] = Int32Array.from({ length: leaf }, (_, i) => i);
    end[L - 1] = Int32Array.from({ length: leaf }, (_, i) => i + 1);
    for (let l = L - 1; l >= 1; l--) {
      const n = lengths[l], odd = n % 2, m = lengths[l - 1];
      parent[l] = Int32Array.from({ length: n }, (_, r) => (r + odd) >> 1);
      first[l - 1] = Int32Array.from({ length: m }, (_, i) => 2 * i - odd); // -1: absent
      start[l - 1] = Int32Array.from(first[l - 1], (f) => start[l][Math.max(f, 0)]);
      end[l - 1] = Int32Array.from(first[l - 1], (f) => end[l][f + 1]);
    }
    parent[0] = Int32Array.from({ length: lengths[0] }, (_, i) => i);
    return { start, end, parent, first };
  }

  function decodeF32(b64) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return new Float32Array(bytes.buffer);
  }

  /** Evidence as sent by sttm_viz.payload: {grid, sizes, child: [b64], pairs: b64}. */
  function prepare(raw) {
    const [T, H, W] = raw.grid;
    const sizes = raw.sizes;
    const L = sizes.length;
    const rows = buildAxis(sizes.map((s) => s[0]));
    const cols = buildAxis(sizes.map((s) => s[1]));
    const counts = sizes.map(([h, w]) => h * w);
    const offsets = [0];
    for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
    // where each (earlier level, later level) block starts in one frame pair's list
    const pairBase = [];
    let P = 0;
    for (let la = 0; la < L; la++) {
      pairBase.push([]);
      for (let lb = 0; lb < L; lb++) { pairBase[la].push(P); P += counts[Math.max(la, lb)]; }
    }
    const child = raw.child.map((c) => (typeof c === "string" ? decodeF32(c) : Float32Array.from(c)));
    const pairs = typeof raw.pairs === "string" ? decodeF32(raw.pairs) : Float32Array.from(raw.pairs);
    if (pairs.length !== Math.max(T - 1, 0) * P) {
      throw new Error(`evidence: ${pairs.length} pair similarities for ${T} frames, expected ${(T - 1) * P}`);
    }
    const minChild = child.map((c) => { // [T*h*w] what tauS is compared with
      const out = new Float32Array(c.length / 4);
      for (let k = 0; k < out.length; k++) {
        out[k] = Math.min(c[4 * k], c[4 * k + 1], c[4 * k + 2], c[4 * k + 3]);
      }
      return out;
    });
    return { T, H, W, sizes, L, rows, cols, counts, offsets, pairBase, pairsPerFrame: P,
             child, minChild, pairs, keepEveryFrame: Boolean(raw.keep_every_frame) };
  }

  /** The 4 child slots of node (i, j) of a level: [{r, c, present}] (absent slots stand for
   * the level's top-left child, as the official code compares them). */
  function childSlots(ev, level, i, j) {
    const out = [];
    for (const dr of [0, 1]) {
      for (const dc of [0, 1]) {
        const r = ev.rows.first[level][i] + dr, c = ev.cols.first[level][j] + dc;
        const present = r >= 0 && c >= 0;
        out.push({ r: present ? r : 0, c: present ? c : 0, present });
      }
    }
    return out;
  }

  /** The tokens of one setting. tauS / tauT: numbers or null (off); root: level index. */
  function merge(ev, tauS, tauT, root) {
    const { T, H, W, L, rows, cols, sizes } = ev;
    const spatialOff = tauS === null || tauS === undefined || tauS > 1;
    const ts = spatialOff ? 0 : Math.fround(tauS);
    // --- spatial search, coarse -> fine, per frame: kept nodes as (t, level, i, j)
    const cap = T * ev.offsets[L];
    const kt = new Int32Array(cap), kl = new Int32Array(cap), ki = new Int32Array(cap), kj = new Int32Array(cap);
    let S = 0;
    const keep = (t, level, i, j) => { kt[S] = t; kl[S] = level; ki[S] = i; kj[S] = j; S++; };
    for (let t = 0; t < T; t++) {
      let [h, w] = sizes[root];
      let visited = new Uint8Array(h * w).fill(1);
      for (let level = root; level < L - 1; level++) {
        const [ch, cw] = sizes[level + 1];
        const next = new Uint8Array(ch * cw);
        const sims = ev.minChild[level];
        const base = t * h * w;
        const firstRow = rows.first[level], firstCol = cols.first[level];
        for (let i = 0; i < h; i++) {
          for (let j = 0; j < w; j++) {
            if (!visited[i * w + j]) continue;
            if (!spatialOff && sims[base + i * w + j] >= ts) { keep(t, level, i, j); continue; }
            const r0 = firstRow[i], c0 = firstCol[j];
            for (let r = Math.max(r0, 0); r <= r0 + 1; r++) {
              for (let c = Math.max(c0, 0); c <= c0 + 1; c++) next[r * cw + c] = 1;
            }
          }
        }
        visited = next; h = ch; w = cw;
      }
      for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) if (visited[i * w + j]) keep(t, L - 1, i, j);
    }
    // --- token order (t, y0, x0): each kept node is the only one whose box starts at its
    // top-left patch, so a scan of the patches in raster order lists them sorted
    const at = new Int32Array(T * H * W).fill(-1);
    for (let k = 0; k < S; k++) at[(kt[k] * H + rows.start[kl[k]][ki[k]]) * W + cols.start[kl[k]][kj[k]]] = k;
    const boxes = new Int32Array(S * 5), node = new Int32Array(S * 3), spatialMap = new Int32Array(T * H * W);
    let s = 0;
    for (let p = 0; p < at.length; p++) {
      const k = at[p];
      if (k < 0) continue;
      const t = kt[k], level = kl[k], i = ki[k], j = kj[k];
      const y0 = rows.start[level][i], y1 = rows.end[level][i], x0 = cols.start[level][j], x1 = cols.end[level][j];
      boxes[5 * s] = t; boxes[5 * s + 1] = y0; boxes[5 * s + 2] = x0; boxes[5 * s + 3] = y1; boxes[5 * s + 4] = x1;
      node[3 * s] = level; node[3 * s + 1] = i; node[3 * s + 2] = j;
      for (let y = y0; y < y1; y++) spatialMap.fill(s, (t * H + y) * W + x0, (t * H + y) * W + x1);
      s++;
    }
    // --- candidate pairs: nested tokens of frames t, t+1, listed once at the smaller box's
    // top-left patch; their similarity read from the evidence
    const pe = [], pl = [], ps = [];
    if (T > 1) {
      for (let t = 0; t + 1 < T; t++) {
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            const a = spatialMap[(t * H + y) * W + x], b = spatialMap[((t + 1) * H + y) * W + x];
            if (Math.max(boxes[5 * a + 1], boxes[5 * b + 1]) !== y || Math.max(boxes[5 * a + 2], boxes[5 * b + 2]) !== x) continue;
            pe.push(a); pl.push(b); ps.push(pairSimilarity(ev, t, node, a, b));
          }
        }
      }
    }
    // --- temporal groups: the official union-find on the similar pairs
    const label = Int32Array.from({ length: S }, (_, i) => i);
    const temporalOff = tauT === null || tauT === undefined;
    let groupLabel = label;
    if (!temporalOff) {
      const tt = Math.fround(tauT);
      const a = [], b = [];
      for (let k = 0; k < pe.length; k++) if (ps[k] >= tt) { a.push(pe[k]); b.push(pl[k]); }
      groupLabel = spreadMinLabels(S, a, b);
      if (ev.keepEveryFrame) groupLabel = keepEveryFrame(groupLabel, boxes, T);
    }
    return finish(ev, boxes, node, spatialMap, groupLabel, { pe, pl, ps }, {
      tauS: spatialOff ? null : tauS, tauT: temporalOff ? null : tauT, root });
  }

  /** Similarity of the pair (spatial token a in frame t, token b in frame t+1) from the
   * evidence: block (level of a, level of b), then the finer node's raster index. */
  function pairSimilarity(ev, t, node, a, b) {
    const la = node[3 * a], lb = node[3 * b];
    const fine = la >= lb ? a : b;
    const w = ev.sizes[node[3 * fine]][1];
    const idx = node[3 * fine + 1] * w + node[3 * fine + 2];
    return ev.pairs[t * ev.pairsPerFrame + ev.pairBase[la][lb] + idx];
  }

  /** sttm_core.temporal._spread_min_labels(until_converged=False): each similar pair takes the
   * smaller label of its ends, then pointer jumping; stops as soon as labels are idempotent. */
  function spreadMinLabels(n, a, b) {
    let label = Int32Array.from({ length: n }, (_, i) => i);
    if (!a.length) return label;
    const low = new Int32Array(a.length);
    for (;;) {
      for (let k = 0; k < a.length; k++) low[k] = Math.min(label[a[k]], label[b[k]]);
      for (let k = 0; k < a.length; k++) if (low[k] < label[a[k]]) label[a[k]] = low[k];
      for (let k = 0; k < b.length; k++) if (low[k] < label[b[k]]) label[b[k]] = low[k];
      const jumped = new Int32Array(n);
      for (let i = 0; i < n; i++) jumped[i] = label[label[i]];
      label = jumped;
      let settled = true;
      for (let i = 0; i < n && settled; i++) settled = label[label[i]] === label[i];
      if (settled) return label;
    }
  }

  /** sttm_core.temporal.keep_every_frame: a frame none of whose tokens represents a group
   * gets its first (top-left) token back as a group of its own; the rest stay as they are. */
  function keepEveryFrame(label, boxes, T) {
    const own = new Uint8Array(T), first = new Int32Array(T).fill(-1);
    for (let s = 0; s < label.length; s++) {
      const t = boxes[5 * s];
      if (first[t] < 0) first[t] = s;
      if (label[s] === s) own[t] = 1;
    }
    const out = Int32Array.from(label);
    for (let t = 0; t < T; t++) if (!own[t] && first[t] >= 0) out[first[t]] = first[t];
    return out;
  }

  /** Groups -> the token structure every drawing reads (also built from server tokens). */
  function finish(ev, boxes, node, spatialMap, label, pairs, setting) {
    const S = label.length;
    const groupOf = new Int32Array(S);
    const reps = [];
    for (let s = 0; s < S; s++) if (label[s] === s) reps.push(s);
    const rank = new Int32Array(S).fill(-1);
    reps.forEach((s, k) => { rank[s] = k; });
    for (let s = 0; s < S; s++) groupOf[s] = rank[label[s]];
    return tokensFrom(ev, boxes, groupOf, spatialMap, { node, pairs, ...setting });
  }

  /** A token structure from spatial boxes [S*5] (sorted by (t, y0, x0)) and the output token
   * of each (spatialToToken [S], -1 for none): token boxes (first occurrence), patches, token
   * map, each token's first/last frame and per-frame counts. */
  function tokensFrom(ev, boxes, spatialToToken, spatialMap, extra = {}) {
    const { T, H, W } = ev;
    const S = spatialToToken.length;
    let N = 0;
    for (let s = 0; s < S; s++) N = Math.max(N, spatialToToken[s] + 1);
    const tokenBoxes = new Int32Array(N * 5).fill(-1), numPatches = new Int32Array(N);
    const first = new Int32Array(N).fill(T), last = new Int32Array(N).fill(-1);
    const spatialPerFrame = new Int32Array(T), newPerFrame = new Int32Array(T);
    for (let s = 0; s < S; s++) {
      const g = spatialToToken[s], t = boxes[5 * s];
      spatialPerFrame[t]++;
      if (g < 0) continue;
      const area = (boxes[5 * s + 3] - boxes[5 * s + 1]) * (boxes[5 * s + 4] - boxes[5 * s + 2]);
      numPatches[g] += area;
      if (tokenBoxes[5 * g] < 0) { tokenBoxes.set(boxes.subarray(5 * s, 5 * s + 5), 5 * g); newPerFrame[t]++; }
      first[g] = Math.min(first[g], t); last[g] = Math.max(last[g], t);
    }
    let map = spatialMap;
    if (!map) {
      map = new Int32Array(T * H * W).fill(-1);
      for (let s = 0; s < S; s++) {
        const [t, y0, x0, y1, x1] = boxes.subarray(5 * s, 5 * s + 5);
        for (let y = y0; y < y1; y++) map.fill(s, (t * H + y) * W + x0, (t * H + y) * W + x1);
      }
    }
    const tokenMap = new Int32Array(T * H * W);
    for (let k = 0; k < tokenMap.length; k++) tokenMap[k] = map[k] < 0 ? -1 : spatialToToken[map[k]];
    return { T, H, W, numSpatial: S, numTokens: N, spatialBoxes: boxes, spatialToToken,
             spatialMap: map, tokenBoxes, numPatches, tokenMap, first, last, spatialPerFrame,
             newPerFrame, ...extra };
  }

  Object.assign(STTM, { buildAxis, decodeF32, prepare, childSlots, merge, pairSimilarity,
                        spreadMinLabels, tokensFrom });
})(typeof window !== "undefined" ? window : globalThis);
