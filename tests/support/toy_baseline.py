"""A reduction of its own, as a contributor would add one: this one entry in the registry
(sttm_core/methods.py's METHODS; here, so the test leaves the package as it is). Importing this
file registers it; everything that lists methods reads the registry after."""
from sttm_core.baselines import uniform_pooling
from sttm_core.methods import METHODS, Method


def _toy(merger, p, attention):
    return uniform_pooling(merger.pyramid.levels[-1], p.budget)  # any reduction at the budget


METHODS["toy_pool"] = Method("toy_pool", "Toy pooling", "budget", False,
                             "a toy baseline: registered in one file", _toy)
