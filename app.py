"""STTM Studio, the app: `python app.py --help` (also the `sttm-studio` command; a Hugging Face
Space runs this file). The steps live in sttm_viz/app.py: args -> model -> UI -> launch.

On a ZeroGPU Space `spaces` is imported first, before anything touches CUDA; the model is then
loaded onto `cuda` here, in the main process, and each model event runs in a GPU worker
(sttm_viz/gpu.py)."""
try:
    import spaces  # noqa: F401  (a Hugging Face Space's package; not needed anywhere else)
except ImportError:
    pass

from sttm_viz.app import main

if __name__ == "__main__":
    main()
