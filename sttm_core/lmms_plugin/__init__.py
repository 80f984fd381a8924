"""STTM as an lmms-eval model: `python -m lmms_eval --model sttm --model_args pretrained=...`.

lmms-eval (>= 0.7) finds models through the `lmms_eval.models` entry point group; ours
(pyproject.toml) points at `manifests` below. lmms-eval loads every entry point while its
model registry is still being built, so this module imports nothing of lmms-eval at the top
and never the model class: the manifest names the class by its path
(`sttm_core.lmms_plugin.model.STTMLmms`), which lmms-eval imports only when `--model sttm`
is used. Importing sttm_core never imports lmms-eval.

lmms-eval is an optional extra whose own pins clash with this project's (av<16, torchvision,
wandb==0.25.0), so it is installed without its dependencies:
    pip install --no-deps lmms-eval==0.7.3 && pip install loguru
"""

MODEL_ID = "sttm"  # the name after --model
MODEL_CLASS = "sttm_core.lmms_plugin.model.STTMLmms"


def manifests():
    """The entry point's payload: lmms-eval's ModelManifest of the sttm model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS)]
