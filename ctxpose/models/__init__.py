"""The ContextPose network and its parts."""

from ctxpose.models.build import (
    build_model,
    load_backbone_checkpoint,
    load_checkpoint,
    load_limb_prior,
    load_model,
    model_from_config,
    read_state_dict,
)
from ctxpose.models.contextpose import ContextPoseNet, ContextPoseOutput

__all__ = ["ContextPoseNet", "ContextPoseOutput", "build_model", "load_backbone_checkpoint", "load_checkpoint",
           "load_limb_prior", "load_model", "model_from_config", "read_state_dict"]
