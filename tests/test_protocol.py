"""The page protocol (sttm_viz/protocol.py): the page's scripts know methods, modes and defaults
only from it, so a method added to the registry reaches the page with no edit there; the page
refuses a protocol version it was not written for. Under Node (no browser), in the quick lane."""
import json
import re

import pytest

from sttm_core.methods import METHODS
from sttm_viz.protocol import METHOD_MENU, PROTOCOL_VERSION, page_protocol
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
