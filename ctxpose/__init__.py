"""ctxpose: ContextPose (Ma et al., CVPR 2021) for 3D human pose estimation.

Public API::

    cfg = ctxpose.load_config("configs/human36m_contextpose.yaml", ["train.batch_size=8"])
    model = ctxpose.build_model(cfg, limb_prior)
    ctxpose.load_checkpoint(model, "weights.pth")
"""

__version__ = "0.1.0"

from ctxpose.config import ExperimentConfig, load_config  # noqa: E402

__all__ = ["ExperimentConfig", "__version__", "load_config"]
