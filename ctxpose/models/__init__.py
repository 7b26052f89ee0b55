"""The ContextPose network and learnable-triangulation's multi-view networks, and their parts."""

from ctxpose.models.algebraic import AlgebraicTriangulationNet, RansacTriangulationNet
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
from ctxpose.models.triangulation import TriangulationOutput

__all__ = ["AlgebraicTriangulationNet", "ContextPoseNet", "ContextPoseOutput", "RansacTriangulationNet",
           "TriangulationOutput", "build_model", "load_backbone_checkpoint", "load_checkpoint", "load_limb_prior",
           "load_model", "model_from_config", "read_state_dict"]
