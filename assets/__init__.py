"""Bundled example videos and their QA set (examples/), made by make_examples.py. Installed as
the package `sttm_assets`; `sttm_core.examples.examples_dir()` finds them either way."""
