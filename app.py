"""STTM Studio entry point. The interactive app is not built yet; for now this shows the library.

    python app.py
"""
import torch

from sttm_core import merge_video_tokens


def main() -> None:
    features = torch.randn(8, 14, 14, 64)  # [T, H, W, C] stand-in for a video's layer-k tokens
    features[1:] = features[:1] + 0.1 * torch.randn(7, 14, 14, 64)  # a mostly static video
    result = merge_video_tokens(features, spatial_threshold=0.8, temporal_threshold=0.6,
                                root_level=1)
    print("STTM Studio: the Gradio app is not built yet. The merge engine works:")
    print(f"  {features.shape[0]} frames x 14x14 patches = {features.shape[:3].numel()} tokens "
          f"-> {result.num_tokens} tokens (keep ratio {result.keep_ratio:.1%}, spatial only "
          f"{result.spatial_keep_ratio:.1%})")
    print("  See README.md for the API: merge_video_tokens, VideoTokenMerger, "
          "thresholds_for_budget, STTMConfig.")


if __name__ == "__main__":
    main()
