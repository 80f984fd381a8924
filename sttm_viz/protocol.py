"""The page protocol: all the page (sttm_viz/web) knows of methods, controls and words, built
from the Python registries (sttm_core.methods.METHODS, guide, the model family's presets) and
sent with the page: the app's lab props, the static export's config. The page's scripts name
no method, default or label of their own; they read this. PROTOCOL_VERSION changes when a
field's meaning does, and the page refuses a protocol it was not written for.
"""
from __future__ import annotations

from sttm_core.methods import METHODS, Method

from . import guide
from .session import DEFAULT_ROOTS

PROTOCOL_VERSION = 2  # 2: controls by name (`controls`), actions answer updates by name
TAU_RANGE = (0.0, 1.0)      # the threshold sliders
BUDGET_RANGE = (0.05, 1.0)  # the budget slider (payload.BUDGETS spans it)
ROOT_GRIDS = DEFAULT_ROOTS  # before a video is loaded (then its own pyramid's)
# the controls as a page opens, in the page's names (labels as the controls show them)
DEFAULTS = {"mode": "Thresholds", "tauS": 0.9, "tauT": 0.9, "temporal": True, "budget": 0.3,
            "root": "4×4", "method": "STTM"}

# the method menu: STTM (at thresholds or the budget) and the baselines at the budget
METHOD_MENU = {m.label: m.name for m in METHODS.values()
               if m.name == "sttm" or (m.takes == "budget" and m.name != "sttm_budget")}


# each control's id in both pages (lab.css styles them; the Gradio bridge finds the threshold
# sliders by it)
PAGE_IDS = {"mode": "sttm-mode", "budget": "sttm-budget", "tauS": "sttm-tau-s",
            "temporal": "sttm-temporal", "tauT": "sttm-tau-t", "root": "sttm-root",
            "method": "sttm-method"}


def _control(name: str, kind: str, label: str, info: str | None = None, **shape) -> dict:
    return {"kind": kind, "label": label, "info": info, **shape, "default": DEFAULTS[name],
            "elem_id": PAGE_IDS[name]}


def _slider(name: str, span: tuple[float, float], help_key: str) -> dict:
    return _control(name, "slider", guide.LABELS[help_key], guide.HELP[help_key],
                    min=span[0], max=span[1], step=0.01)


# The page's controls by name, in the order a page shows them: kind, label, one line of help,
# range or choices, default and page id. ui.py and static.js build their controls from this;
# the page's actions (app.js) take their values and answer updates under these names.
CONTROLS = {
    "mode": _control("mode", "radio", guide.LABELS["mode"], choices=list(guide.MODES)),
    "budget": _slider("budget", BUDGET_RANGE, "budget"),
    "tauS": _slider("tauS", TAU_RANGE, "tau_s"),
    "temporal": _control("temporal", "check", guide.HELP["temporal"]),
    "tauT": _slider("tauT", TAU_RANGE, "tau_t"),
    "root": _control("root", "radio", guide.LABELS["root"], guide.HELP["root"],
                     choices=list(ROOT_GRIDS)),
    "method": _control("method", "select", guide.LABELS["method"], guide.HELP["method"],
                       choices=list(METHOD_MENU)),
}


def method_descriptor(method: Method) -> dict:
    """What the page needs of a method: who computes its tokens ("page": it re-thresholds
    STTM's merge from the evidence, at a budget through the budget table; "server"), whether
    it uses the quadtree and the root grid, how it merges across frames, whether it asks a
    question's attention (and drops patches)."""
    rule = method.thresholded
    return {"name": method.name, "label": method.label, "summary": method.summary,
            "takes": method.takes, "computed": "page" if rule else "server",
            "quadtree": bool(rule and rule.quadtree), "temporal": rule.temporal if rule else None,
            "query_aware": method.query_aware}


def page_protocol(presets: dict) -> dict:
    """The protocol for one app (presets: its model family's, Engine.presets)."""
    return {"version": PROTOCOL_VERSION,
            "menu": METHOD_MENU, "controls": CONTROLS,
            "methods": {name: method_descriptor(METHODS[name]) for name in METHOD_MENU.values()},
            "modes": guide.MODES, "words": guide.WORDS,
            "labels": {k: guide.LABELS[k] for k in ("example", "presets")},  # the static page's
            "presets": {name: list(taus) for name, taus in presets.items()}}
