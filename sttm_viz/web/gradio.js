/* The page's one bridge to Gradio (sttm_viz/ui.py): the app's controls by name.

ui.py's event handlers are one line each: `STTM.send(action, inputs, values, outputs, fixed)`.
The named input controls' values (and the fixed ones) become one object for app[action]; its
answer, an update per control name ({value, interactive, info, visible}), goes back as Gradio
updates in the order of the named outputs. This is the one file that knows Gradio's update
format and its components' markup; the page's other modules know neither.

ui.py's head imports this module (served as a file); it sets window.STTM, which ui.py's event
strings and js_on_load code call.
*/
import { app } from "./app.js";
import { mountLab } from "./lab.js";
import { mountHistogram } from "./plots.js";

const update = (answer) => ({ __type__: "update", ...(answer || {}) });

/** app[action] on the named controls' values; its answer as Gradio updates for `outputs`. */
function send(action, inputs, values, outputs = [], fixed = {}) {
  const named = { ...fixed };
  inputs.forEach((name, k) => { named[name] = values[k]; });
  const answer = app[action](named) || {};
  return outputs.map((name) => update(answer[name]));
}

/** The lab in a gr.HTML (its js_on_load: element, props, watch): the protocol, the video
 * payload whenever the server sends one, and the threshold sliders followed as they move. */
function mountLabIn(element, props, watch) {
  mountLab(element, props);
  followSliders(props.protocol.controls);
  watch("value", () => app.load(props.value));
  if (props.value) app.load(props.value);
}

/** The hidden server channel (a gr.HTML): the page asks by clicking it (ui.py: handlers.sync)
 * and receives what only the server computes through its value. */
function mountServer(trigger, props, watch) {
  app.requestServer = () => trigger("click");
  watch("value", () => app.receive(props.value));
}

// Gradio hands a moved slider to its `change` listeners a frame later; the lab re-merges on
// the range's own input event instead (the `change` that follows finds the same value and
// draws nothing). The sliders are found by their page ids from the protocol.
let following = false;
function followSliders(controls) {
  if (following) return;
  following = true;
  const byId = Object.fromEntries(Object.entries(controls)
    .filter(([, spec]) => spec.kind === "slider").map(([name, spec]) => [spec.elem_id, name]));
  const selector = Object.keys(byId).map((id) => `#${id}`).join(",");
  document.addEventListener("input", (e) => {
    const range = e.target;
    if (!range || range.type !== "range" || !range.closest) return;
    const block = range.closest(selector);
    if (block) app.control({ [byId[block.id]]: Number(range.value) });
  }, true);
}

window.STTM = {
  app, send, mountLab: mountLabIn, mountServer, mountHistogram,
  loading: (message) => app.loading(message),
  module: (name) => import(new URL(`./${name}`, import.meta.url).href), // the console, the tests
};
