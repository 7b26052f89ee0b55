"""Pictures, videos and plots of the data, the predictions, the network's internals and training runs.

One module per ``ctxpose visualize`` mode (:mod:`~ctxpose.viz.dataset`, :mod:`~ctxpose.viz.predictions`,
:mod:`~ctxpose.viz.model`, :mod:`~ctxpose.viz.run`) over shared pieces: :mod:`~ctxpose.viz.style` (the one
left/right colour scheme and the sizes), :mod:`~ctxpose.viz.draw` (OpenCV 2D overlays), :mod:`~ctxpose.viz.figures`
(matplotlib 3D views and plots, Agg canvas, no display and no global matplotlib state) and
:mod:`~ctxpose.viz.output` (PNG, MP4, GIF and TensorBoard sinks).

Images are uint8 (H, W, 3) **RGB** arrays everywhere in this package; conversion to OpenCV's BGR happens only
when a file is read or written. Projections go through :func:`ctxpose.geometry.project_points`, the model's own
camera code; a joint whose projection is not finite (NaN, at or behind the camera) is not drawn.

Importing this package is cheap: matplotlib is imported only by the modules that plot.
"""
