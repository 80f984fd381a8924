"""Drives the `--model sttm` lmms-eval model the way lmms-eval's evaluator does, in its own
process (importing lmms-eval changes global warnings filters and logging sinks):

    python -m support.lmms_driver SPEC.json OUT.json

SPEC: {"task": ..., "split": ..., "runs": [{"model_args": "pretrained=...,tau_s=0.85",
       "requests": [{"context": ..., "gen_kwargs": {...}, "video": PATH}, ...]}, ...]}
OUT:  what lmms-eval resolved and, per run, the parsed config and the answers in request order
      (or the ValueError that refused the requests).
The test that runs it makes the assertions.
"""
import dataclasses
import json
import sys

import torch


def run(spec: dict) -> dict:
    from importlib.metadata import entry_points

    import lmms_eval.models as registry
    from lmms_eval.api.instance import Instance, unwrap_generation_output

    import sttm_core

    model_class = registry.get_model("sttm")  # lmms-eval's registry, fed by the entry point
    out = {"entry_points": {ep.name: ep.value for ep in entry_points(group="lmms_eval.models")},
           "listed": "sttm" in registry.list_available_models(),
           "class": f"{model_class.__module__}.{model_class.__qualname__}",
           "sttm_core": sttm_core.__file__, "runs": []}
    task, split = spec["task"], spec["split"]
    for run_spec in spec["runs"]:
        # what evaluator.py does: model_args string + the CLI's batch_size / device
        lm = model_class.create_from_arg_string(run_spec["model_args"], {
            "batch_size": "1", "max_batch_size": None, "device": None})
        docs = [{"video": r["video"]} for r in run_spec["requests"]]
        lm.task_dict[task] = {split: docs}  # the evaluator stores each task's dataset here
        requests = [Instance(request_type="generate_until",  # as ConfigurableTask builds them
                             arguments=(r["context"], dict(r["gen_kwargs"]), doc_to_visual,
                                        doc_id, task, split),
                             idx=0, metadata={"task": task, "doc_id": doc_id, "repeats": 1,
                                              "split": split})
                    for doc_id, r in enumerate(run_spec["requests"])]
        try:
            answers = [unwrap_generation_output(x) for x in lm.generate_until(requests)]
        except ValueError as err:  # a bad request
            out["runs"].append({"error": str(err)})
            continue
        try:
            lm.loglikelihood(requests)
            refused = None
        except NotImplementedError as err:
            refused = str(err)
        out["runs"].append({
            "config": dataclasses.asdict(lm.config),
            "texts": [text for text, _ in answers],
            "token_counts": [counts.to_dict() for _, counts in answers],
            "loglikelihood_refused": refused})
    return out


def doc_to_visual(doc: dict) -> list:
    return [doc["video"]]


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the test process (conftest), so the floats match exactly
    spec_path, out_path = sys.argv[1:3]
    with open(spec_path) as f:
        result = run(json.load(f))
    with open(out_path, "w") as f:
        json.dump(result, f)
