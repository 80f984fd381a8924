"""The registry's parameter records and its one parse: what each method takes, how a bad value
is named, and that the app, the sweeps and the lmms-eval plugin all go through the same parse."""
import ast
import math
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from sttm_core import STTMConfig, merge_video_tokens, reduce_tokens
from sttm_core.methods import METHODS, parse
from sttm_core.examples import examples_dir
from sttm_core.reduction import AllTokens, Budget, ReductionError, RootGrid, Thresholds
from support.videos import smooth_features

pytestmark = pytest.mark.core

RECORD_OF = {"all": AllTokens, "sttm": Thresholds, "root_pool": RootGrid}  # the rest: Budget


def test_each_method_takes_the_record_the_registry_says():
    for method in METHODS.values():
        want = RECORD_OF.get(method.name, Budget)
        assert method.record is want, method.name
        assert method.fields == tuple(f.name for f in fields(want))
        values = {"budget": 0.3} if want is Budget else {}
        assert type(parse(method.name, **values)) is want
        config = STTMConfig(method=method.name, keep_ratio=values.get("budget"))
        assert type(config.reduction) is want and config.budget == values.get("budget")
    # where it acts and how similarities are taken are no record's
    every = {f for m in METHODS.values() for f in m.fields}
    assert every == {"spatial_threshold", "temporal_threshold", "root_level", "temporal_mode",
                     "budget"}


def test_parse_takes_the_spellings_people_use_and_defaults_the_rest():
    assert parse("sttm", tau_s=0.85, tau_t=None) == Thresholds(0.85, None, 1, "official")
    assert parse("sttm", spatial_threshold=0.85, root_level=0) == Thresholds(0.85, 0.6, 0)
    assert parse("uniform", keep_ratio=0.3) == parse("uniform", budget=0.3) == Budget(0.3)
    assert parse("all", keep_ratio=None) == AllTokens()  # None: not given


def test_the_budget_asked_is_not_the_share_kept():
    x = smooth_features(4, 14, 14, 8, seed=3, noise=0.9, drift=0.6)
    config = STTMConfig(method="uniform", keep_ratio=0.3)
    result = reduce_tokens(x, config)
    assert config.budget == config.reduction.budget == 0.3
    assert result.keep_ratio == result.num_tokens / (4 * 14 * 14) != config.budget


def test_the_record_is_what_the_merge_gets():
    x = smooth_features(4, 14, 14, 8, seed=2, noise=0.9, drift=0.6)
    config = STTMConfig.of("sttm", parse("sttm", tau_s=0.7, tau_t=0.5, root_level=0))
    assert config == STTMConfig(0.7, 0.5, 0)
    assert torch.equal(reduce_tokens(x, config).boxes, merge_video_tokens(x, 0.7, 0.5, 0).boxes)
    with pytest.raises(ReductionError, match="method='sttm' takes a Thresholds record, got Budget"):
        STTMConfig.of("sttm", Budget(0.3))


def test_the_config_holds_the_record_it_is_given():
    """One parse: the record a boundary made is the one the merge gets, not a copy re-parsed."""
    record = parse("sttm", tau_s=0.7, tau_t=None, root_level=0)
    config = STTMConfig.of("sttm", record, merge_layer=3)
    assert config.reduction is record and config.spatial_threshold == 0.7
    changed = replace(config, spatial_threshold=0.5)  # fields changed: parsed anew from them
    assert changed.reduction == Thresholds(0.5, None, 0) and changed.merge_layer == 3


@pytest.mark.parametrize("values, message", [
    (dict(method="uniform", keep_ratio=0.3, spatial_threshold=-5),
     r"^method='uniform' keeps a token budget; it takes no spatial_threshold \(got -5\)$"),
    (dict(method="fastv", keep_ratio=0.3, temporal_threshold=None, merge_layer=1),
     r"^method='fastv' keeps a token budget; it takes no temporal_threshold"),
    (dict(method="all", root_level=0), r"^method='all' merges nothing; it takes no root_level"),
    (dict(method="root_pool", temporal_mode="components"),
     r"^method='root_pool' pools every frame .*; it takes no temporal_mode"),
])
def test_a_field_the_method_does_not_read_must_keep_its_default(values, message):
    with pytest.raises(ReductionError, match=message):
        STTMConfig(**values)
    unread = {k: v for k, v in values.items() if k not in ("method", "keep_ratio", "merge_layer")}
    defaults = {k: getattr(STTMConfig(), k) for k in unread}  # given as the default: accepted
    STTMConfig(**{**values, **defaults})


@pytest.mark.parametrize("method, values, message", [
    ("sttm", dict(tau_s=-2), r"^tau_s=-2 is out of range"),
    ("sttm", dict(spatial_threshold=math.nan), r"^spatial_threshold is NaN"),
    ("sttm", dict(tau_t="high"), r"^tau_t must be a number or OFF \(None\), got 'high'"),
    ("sttm", dict(tau_t=True), r"^tau_t must be a number"),
    ("sttm", dict(root_level=1.5), r"^root_level must be an integer, got 1.5"),
    ("sttm", dict(temporal_mode="fast"), r"^temporal_mode='fast' is not one of"),
    ("uniform", dict(budget=0), r"^method='uniform' keeps a token budget: budget must be a "
                                r"number in \(0, 1\], got 0$"),
    ("fastv", dict(keep_ratio=1.5), r"keeps a token budget: keep_ratio must be .*got 1.5$"),
    ("dycoke", dict(keep_ratio=math.nan), r"keep_ratio must be .*got nan$"),
    ("fastv", {}, r"^method='fastv' keeps a token budget: budget must be"),
    ("sttm", dict(keep_ratio=0.3), r"^method='sttm' takes no keep_ratio; for a token budget use"),
    ("uniform", dict(tau_s=0.8), r"^method='uniform' takes no tau_s: it keeps a token budget"),
    ("all", dict(root_level=1), r"^method='all' takes no root_level: it merges nothing"),
    ("root_pool", dict(temporal_mode="official"), r"takes no temporal_mode: it pools"),
    ("sttm", dict(tau=0.8), r"^method='sttm' takes no tau:"),
    ("sttm", dict(tau_s=0.8, spatial_threshold=0.8), r"given twice"),
    ("tome", {}, r"^method='tome' is not one of all, sttm, sttm_budget"),
])
def test_parse_names_the_value_at_fault(method, values, message):
    with pytest.raises(ReductionError, match=message):
        parse(method, **values)
    assert issubclass(ReductionError, ValueError)


SAME = r"tau_s=-1.5 is out of range: cosine similarity thresholds lie in \[-1, 1\]"


def test_every_boundary_goes_through_the_same_parse(monkeypatch, capsys):
    """The same bad value gives the same message at the app, the sweep and the plugin."""
    from sttm_core.lmms_plugin.options import parse_model_args
    from sttm_core.sweep import Setting, parse_args
    from sttm_viz import handlers
    from sttm_viz.session import UserError

    with pytest.raises(ReductionError, match=SAME):
        parse("sttm", tau_s=-1.5)
    with pytest.raises(ReductionError, match=SAME):
        Setting("sttm", -1.5, 0.6).config(1, 2)
    with pytest.raises(ReductionError, match=SAME):
        parse_model_args({"pretrained": "x", "tau_s": "-1.5"})
    with pytest.raises(SystemExit):
        parse_args([str(examples_dir() / "qa.jsonl"), "--features", "pixel",
                    "--tau-s", "-1.5", "--methods", "sttm"])
    assert "tau_s=-1.5 is out of range" in capsys.readouterr().err
    # the app's sliders stop at 0; wider, the value reaches parse and its message the page
    monkeypatch.setattr(handlers, "TAU_RANGE", (-5.0, 5.0))
    with pytest.raises(UserError, match=SAME):
        handlers.controls_from(None, "Thresholds", -1.5, 0.6, True, 0.3, None, 2, "STTM")
    # one config, whichever boundary built it
    app = handlers.controls_from(None, "Token budget", 0.8, 0.6, True, 0.3, None, 2,
                                 "Uniform pooling").config
    assert app == Setting("uniform", budget=0.3).config(1, 2) == parse_model_args(
        {"pretrained": "x", "method": "uniform", "keep_ratio": 0.3}).config


def test_config_and_methods_do_not_import_each_other():
    source = (Path(__file__).parents[1] / "sttm_core" / "methods.py").read_text()
    imported = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom)}
    assert "config" not in imported and "reduction" in imported
