"""STTM Studio, the app: `python app.py --help` (also the `sttm-studio` command; a Hugging Face
Space runs this file). The steps live in sttm_viz/app.py: args -> model -> UI -> launch."""
from sttm_viz.app import main

if __name__ == "__main__":
    main()
