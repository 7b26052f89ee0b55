"""Linear (DLT) triangulation over views, batched: learnable-triangulation's algebraic and RANSAC step.

Forward contract of every network :func:`ctxpose.models.build.build_model` returns
--------------------------------------------------------------------------------------
(``model.architecture``: ``contextpose`` | ``volumetric`` | ``algebraic`` | ``ransac``; B samples, V views,
J joints, crops of H x W pixels)::

    out = model(images, proj_matrices, root_points=None, rotation_angles=None)

* ``images``: (B, V, 3, H, W) float, normalised crops, exactly as ContextPose gets them today
  (``ctxpose.data.transforms``). V >= 1; ``algebraic`` and ``ransac`` need V >= 2 (a ValueError otherwise).
* ``proj_matrices``: (B, V, 3, 4) world mm -> crop/image pixels (the matrices ContextPose gets today; the
  models rescale them to the heatmaps themselves).
* ``root_points``: (B, 3) world mm, the cuboid centre (ground-truth pelvis or an estimate, as ContextPose's
  batch gives it today). Required by ``contextpose`` and ``volumetric``; ``algebraic`` and ``ransac`` ignore
  it (pass None).
* ``rotation_angles``: (B,) radians about the vertical axis, as ContextPose (None: none in eval mode,
  random in training mode). Ignored by ``algebraic`` and ``ransac``.

Every output has ``keypoints_3d``: (B, J, 3) world mm (float32 for float32 inputs).

* ``contextpose`` and ``volumetric`` return :class:`ctxpose.models.contextpose.ContextPoseOutput`
  (``volumetric``'s ``attention`` is None: no limb-prior block, so no global-attention loss).
* ``algebraic`` and ``ransac`` return :class:`TriangulationOutput` with also
  ``keypoints_2d``: (B, V, J, 2) crop pixels (x, y), the soft-argmax (algebraic) or argmax (ransac) of the
  heatmaps scaled to the crop; ``confidences``: (B, V, J), algebraic: the confidence head's output
  normalised over views plus 1e-5 (as the original; all 1/V + 1e-5 with ``use_confidences: false``),
  ransac: 1 for the views of the inlier set of each joint, 0 for the others; ``heatmaps``: (B, V, J, h, w)
  (softmaxed as the original when ``heatmap_softmax``).

Losses: every architecture's 3D keypoint loss reads ``keypoints_3d`` (``loss.criterion``); the volumetric CE
loss reads ``volumes``/``coord_volumes`` (volumetric kinds only); the global-attention loss only exists
for ``contextpose``.
"""
