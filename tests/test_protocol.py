"""The page protocol (sttm_viz/protocol.py): the page's scripts know methods, modes and defaults
only from it, so a method added to the registry reaches the page with no edit there; the page
refuses a protocol version it was not written for. Under Node (no browser), in the quick lane."""
import json
import re

import pytest

from sttm_core.methods import METHODS
from sttm_viz.protocol import CONTROLS, METHOD_MENU, PROTOCOL_VERSION, page_protocol
from support.node import run_node
from support.page import WEB

pytestmark = pytest.mark.core
PAGE = sorted(p.name for p in WEB.glob("*.js"))  # every module of the page, both bridges


def run_app(script: str, protocol: dict) -> str:
    """app.js under Node with `protocol` given to the page; script's stdout."""
    body = ("const protocol = JSON.parse((await import('node:fs')).readFileSync(0, 'utf8'));\n"
            + script)
    done = run_node(["app.js"], body, json.dumps(protocol), timeout=60)
    return done.stdout + done.stderr


def test_the_page_scripts_name_no_method_of_their_own():
    names = "|".join(name for name in METHODS if name != "all")
    for script in PAGE:
        text = (WEB / script).read_text()
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)  # comments may explain
        found = re.findall(rf"[\"'`]({names})[\"'`|]", code)
        assert not found, (script, found)


def test_every_menu_method_is_described_from_the_registry():
    protocol = page_protocol({"Paper 50% (τS .85, τT .65)": (0.85, 0.65)})
    assert protocol["version"] == PROTOCOL_VERSION and protocol["menu"] == METHOD_MENU
    for label, name in METHOD_MENU.items():
        d, m = protocol["methods"][name], METHODS[name]
        assert (d["label"], d["summary"], d["query_aware"]) == (label, m.summary, m.query_aware)
        assert d["computed"] == ("page" if m.thresholded else "server")
    assert protocol["methods"]["temporal_only"]["quadtree"] is False
    assert protocol["methods"]["spatial_only"]["temporal"] == "off"


def test_the_page_takes_its_defaults_and_refuses_another_version():
    protocol = json.loads(json.dumps(page_protocol({})))
    out = run_app("STTM.app.useProtocol(protocol);"
                  "process.stdout.write(JSON.stringify([STTM.app.settings, STTM.app.labels]));",
                  protocol)
    settings, labels = json.loads(out)
    assert settings == {"mode": "thresholds", "tauS": 0.9, "tauT": 0.9, "temporal": True,
                        "budget": 0.3, "root": "4×4", "method": "sttm"}
    assert labels == {name: label for label, name in METHOD_MENU.items()}
    out = run_app("STTM.app.useProtocol({...protocol, version: protocol.version + 1});", protocol)
    assert f"page protocol {PROTOCOL_VERSION + 1}: this page reads {PROTOCOL_VERSION}" in out


def test_only_the_bridge_knows_gradios_update_format():
    for script in PAGE:
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", (WEB / script).read_text(), flags=re.S)
        assert ("__type__" in code) == (script == "gradio.js"), script


def test_the_bridge_addresses_controls_by_name():
    """web/gradio.js under Node: the named inputs reach the action by name, and its answer comes
    back as Gradio updates in the order of the named outputs, whatever that order is."""
    protocol = json.loads(json.dumps(page_protocol({"P": (0.85, 0.65)})))
    body = ("globalThis.window = {}; await import(" + json.dumps((WEB / "gradio.js").as_uri()) + ");"
            "const S = window.STTM; S.app.useProtocol(protocol);"
            "const state = ['mode', 'method', 'temporal', 'budget'];"
            "const out = [S.send('controlState', state, ['Token budget', 'STTM', true, 0.4],"
            "                    ['root', 'budget', 'tauS', 'mode']),"
            "             S.send('preset', [], [], ['tauT', 'mode'], {tauS: 0.85, tauT: 0.65}),"
            "             S.app.settings];"
            "process.stdout.write(JSON.stringify(out));")
    done = run_node([], "const protocol = JSON.parse((await import('node:fs')).readFileSync(0, 'utf8'));\n"
                    + body, json.dumps(protocol), timeout=60)
    assert done.returncode == 0, done.stderr
    state, preset, settings = json.loads(done.stdout)
    root, budget, tau_s, mode = state
    assert all(u["__type__"] == "update" for u in state + preset)
    assert budget["visible"] is True and tau_s["interactive"] is False  # the budget sets τS
    assert mode["value"] == "Token budget" and root["interactive"] is True
    assert preset == [{"__type__": "update", "value": 0.65},
                      {"__type__": "update", "value": "Thresholds"}]
    assert (settings["mode"], settings["tauS"], settings["budget"]) == ("thresholds", 0.85, 0.4)


def test_the_app_builds_its_controls_from_the_protocol():
    from sttm_viz.session import Engine
    from sttm_viz.ui import build_demo

    demo = build_demo(Engine(None, "no model (test)"), gpu=None)
    by_id = {c["props"].get("elem_id"): c["props"] for c in demo.config["components"]}
    for name, spec in CONTROLS.items():
        props = by_id[spec["elem_id"]]
        assert (props["label"], props["value"]) == (spec["label"], spec["default"]), name
        if spec["kind"] == "slider":
            assert (props["minimum"], props["maximum"], props["step"]) == (
                spec["min"], spec["max"], spec["step"]), name
        if "choices" in spec:
            assert [c[0] for c in props["choices"]] == spec["choices"], name
