/* STTM's merge in the page, as decisions read from a video's evidence (sttm_viz/payload.py).

Spatial half: a filter. The server sends each quadtree node's τS interval per root level
(sttm_core/decisions.py): a node is a token iff low_r < τS <= high (high: its lowest child
similarity, +inf on leaves; low_r: the largest high of its ancestors from root level r down).
The page takes, frame by frame, the nodes whose interval holds τS in the server's `order` (by
(y0, x0), the engine's token order), so it never re-runs the search. Temporal half: the
official union-find over τT (unionfind.js, loaded before this file).
tests/test_page_merge.py runs both in Chromium, tests/test_unionfind_node.py under Node,
against sttm_core.merge_video_tokens.

torch compares a float32 similarity with a Python float threshold in float32, so τS is rounded
with Math.fround first. A threshold of null turns its half off; τS above 1 does too, and then
acts as +inf: only the leaves' intervals hold it.
Shape legend: T frames, H x W leaf grid, h x w a level's grid, M nodes per frame,
S spatial tokens, N tokens.
*/
import { decodeF32, preparePairs, temporalLabels } from "./unionfind.js";


const ints = (x) => Int32Array.from(x);
const f32 = (x) => (typeof x === "string" ? decodeF32(x) : Float32Array.from(x));

/** [T*width]: each frame's n values of `part` [T*n] placed at column `at`, `fill` elsewhere. */
function spread(part, T, width, at, fill) {
  const out = new Float32Array(T * width).fill(fill), n = T ? part.length / T : 0;
  for (let t = 0; t < T; t++) out.set(part.subarray(t * n, (t + 1) * n), t * width + at);
  return out;
}

/** Evidence as sent by sttm_viz.payload: {grid, sizes, spatial: {high, low: [per root],
 * level, box, parent, order}, pairs, keep_every_frame}. */
export function prepare(raw) {
  const [T, H, W] = raw.grid;
  const sizes = raw.sizes, L = sizes.length, sp = raw.spatial;
  const offsets = [0];
  for (const [h, w] of sizes) offsets.push(offsets[offsets.length - 1] + h * w);
  const M = offsets[L];
  // the constants left out of the payload: high = +inf on the leaves, low_r = -inf on level r
  const high = spread(f32(sp.high), T, M, 0, Infinity); // [T*M]
  const low = sp.low.map((part, r) => // per root r: [T*(M - offsets[r])], nodes of levels >= r
    spread(f32(part), T, M - offsets[r], offsets[r + 1] - offsets[r], -Infinity));
  const order = ints(sp.order);
  // per root level: the order without the nodes above it (they never count)
  const orderFrom = offsets.slice(0, L).map((first) => order.filter((n) => n >= first));
  return { T, H, W, sizes, L, M, offsets, high, low, order, orderFrom, level: ints(sp.level),
           box: ints(sp.box), parent: ints(sp.parent), keepEveryFrame: Boolean(raw.keep_every_frame),
           ...preparePairs(raw.pairs, sizes, T) };
}

/** The nodes whose τS interval at root level `root` holds tauS (null or > 1: off), in the
 * engine's token order: {boxes [S*5] (t, y0, x0, y1, x1), node [S] ids, map [T*H*W]}. */
export function spatial(ev, tauS, root) {
  const { T, H, W, M, offsets, high, box } = ev;
  const off = tauS === null || tauS === undefined || tauS > 1;
  const ts = off ? Infinity : Math.fround(tauS);
  const first = offsets[root], Mr = M - first, low = ev.low[root], nodes = ev.orderFrom[root];
  const cap = T * H * W; // every token covers at least one patch
  const boxes = new Int32Array(cap * 5), node = new Int32Array(cap), map = new Int32Array(T * H * W);
  let S = 0;
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < nodes.length; k++) {
      const n = nodes[k];
      if (!(low[t * Mr + n - first] < ts && ts <= high[t * M + n])) continue;
      const y0 = box[4 * n], x0 = box[4 * n + 1], y1 = box[4 * n + 2], x1 = box[4 * n + 3];
      boxes[5 * S] = t; boxes[5 * S + 1] = y0; boxes[5 * S + 2] = x0; boxes[5 * S + 3] = y1; boxes[5 * S + 4] = x1;
      node[S] = n;
      for (let y = y0; y < y1; y++) map.fill(S, (t * H + y) * W + x0, (t * H + y) * W + x1);
      S++;
    }
  }
  return { boxes: boxes.slice(0, 5 * S), node: node.slice(0, S), map };
}

/** The tokens of one setting. tauS / tauT: numbers or null (off); root: level index. */
export function merge(ev, tauS, tauT, root) {
  const sp = spatial(ev, tauS, root);
  const { label, pairs } = temporalLabels(ev, sp, tauT);
  const spatialOff = tauS === null || tauS === undefined || tauS > 1;
  const temporalOff = tauT === null || tauT === undefined;
  return finish(ev, sp, label, pairs, {
    tauS: spatialOff ? null : tauS, tauT: temporalOff ? null : tauT, root });
}

/** The τS decision trail of node n of frame t from root level `root`: its ancestors from the
 * root down, then itself, each {node, high} (high: its lowest child similarity, +inf for a
 * leaf), and the node's interval {low, high}. */
export function trail(ev, t, n, root) {
  const path = [];
  for (let a = n; a >= 0 && ev.level[a] >= root; a = ev.parent[a]) path.unshift({ node: a, high: ev.high[t * ev.M + a] });
  const first = ev.offsets[root];
  return { path, low: ev.low[root][t * (ev.M - first) + n - first], high: ev.high[t * ev.M + n] };
}

/** Groups -> the token structure every drawing reads (also built from server tokens). */
function finish(ev, sp, label, pairs, setting) {
  const S = label.length;
  const groupOf = new Int32Array(S);
  const reps = [];
  for (let s = 0; s < S; s++) if (label[s] === s) reps.push(s);
  const rank = new Int32Array(S).fill(-1);
  reps.forEach((s, k) => { rank[s] = k; });
  for (let s = 0; s < S; s++) groupOf[s] = rank[label[s]];
  return tokensFrom(ev, sp.boxes, groupOf, sp.map, { node: sp.node, pairs, ...setting });
}

/** A token structure from spatial boxes [S*5] (sorted by (t, y0, x0)) and the output token
 * of each (spatialToToken [S], -1 for none): token boxes (first occurrence), patches, token
 * map, each token's first/last frame and per-frame counts. */
export function tokensFrom(ev, boxes, spatialToToken, spatialMap, extra = {}) {
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

/** Share of frame t's patches carried over from an earlier frame (0 at frame 0). */
export function carriedShare(tk, t) {
  if (!tk || !tk.first) return 0;
  const b = tk.spatialBoxes;
  let area = 0;
  for (let s = 0; s < tk.numSpatial; s++) {
    if (b[5 * s] !== t) continue;
    const token = tk.spatialToToken[s];
    if (token >= 0 && tk.first[token] < t) area += (b[5 * s + 3] - b[5 * s + 1]) * (b[5 * s + 4] - b[5 * s + 2]);
  }
  return area / (tk.H * tk.W);
}
