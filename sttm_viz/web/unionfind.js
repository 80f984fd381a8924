/* STTM's temporal half over τT, the one rule the page must run itself rather than filter:
the official union-find (sttm_core/temporal.py, temporal_mode "official").

Given the spatial tokens of one setting (merge.js), the candidate pairs are the nested tokens of
frames t, t+1 (listed once, at the smaller box's top-left patch), their similarity read from
the evidence's nested-pair list (sttm_core/evidence.py's order); the pairs with similarity >=
τT spread the smaller label of their ends, then pointer jumping, until labels are idempotent;
then, where the evidence says so (Qwen3-VL), keep_every_frame. torch compares the fp32
similarity with τT in fp32, hence Math.fround. Loaded by the page and, under Node, by
tests/test_unionfind_node.py, which checks the tokens against sttm_core.merge_video_tokens.
Shape legend: T frames, H x W leaf grid, S spatial tokens, P candidate pairs.
*/

export function decodeF32(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

/** The nested-pair similarities of the evidence and where each (earlier level, later level)
 * block starts in one frame pair's list: {pairs [(T-1)*P], pairBase [L][L], pairsPerFrame}. */
export function preparePairs(raw, sizes, T) {
  const L = sizes.length, counts = sizes.map(([h, w]) => h * w);
  const pairBase = [];
  let P = 0;
  for (let la = 0; la < L; la++) {
    pairBase.push([]);
    for (let lb = 0; lb < L; lb++) { pairBase[la].push(P); P += counts[Math.max(la, lb)]; }
  }
  const pairs = typeof raw === "string" ? decodeF32(raw) : Float32Array.from(raw);
  if (pairs.length !== Math.max(T - 1, 0) * P) {
    throw new Error(`evidence: ${pairs.length} pair similarities for ${T} frames, expected ${(T - 1) * P}`);
  }
  return { pairs, pairBase, pairsPerFrame: P };
}

/** Similarity of spatial tokens a (frame t) and b (frame t+1): block (level of a, level of b),
 * then the finer node's raster index in its level. sp.node: evidence node id of each token. */
export function pairSimilarity(ev, sp, t, a, b) {
  const na = sp.node[a], nb = sp.node[b];
  const la = ev.level[na], lb = ev.level[nb];
  const fine = la >= lb ? na : nb;
  return ev.pairs[t * ev.pairsPerFrame + ev.pairBase[la][lb] + fine - ev.offsets[ev.level[fine]]];
}

/** {pe, pl, ps}: every nested pair of spatial tokens of consecutive frames and its similarity.
 * sp: {boxes [S*5] (t, y0, x0, y1, x1), node [S], map [T*H*W] token of each patch}. */
export function candidatePairs(ev, sp) {
  const { T, H, W } = ev, { boxes, map } = sp;
  const pe = [], pl = [], ps = [];
  for (let t = 0; t + 1 < T; t++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const a = map[(t * H + y) * W + x], b = map[((t + 1) * H + y) * W + x];
        if (Math.max(boxes[5 * a + 1], boxes[5 * b + 1]) !== y || Math.max(boxes[5 * a + 2], boxes[5 * b + 2]) !== x) continue;
        pe.push(a); pl.push(b); ps.push(pairSimilarity(ev, sp, t, a, b));
      }
    }
  }
  return { pe, pl, ps };
}

/** sttm_core.temporal._spread_min_labels(until_converged=False): each similar pair takes the
 * smaller label of its ends, then pointer jumping; stops as soon as labels are idempotent. */
export function spreadMinLabels(n, a, b) {
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
export function keepEveryFrame(label, boxes, T) {
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

/** {label [S] group representative of each spatial token, pairs}; tauT null: off (every
 * token its own group; the pairs are still listed, for the inspector). */
export function temporalLabels(ev, sp, tauT) {
  const pairs = candidatePairs(ev, sp);
  const S = sp.node.length;
  if (tauT === null || tauT === undefined) return { label: Int32Array.from({ length: S }, (_, i) => i), pairs };
  const tt = Math.fround(tauT), a = [], b = [];
  for (let k = 0; k < pairs.pe.length; k++) if (pairs.ps[k] >= tt) { a.push(pairs.pe[k]); b.push(pairs.pl[k]); }
  let label = spreadMinLabels(S, a, b);
  if (ev.keepEveryFrame) label = keepEveryFrame(label, sp.boxes, ev.T);
  return { label, pairs };
}
