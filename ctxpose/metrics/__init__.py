"""3D pose metrics: :mod:`ctxpose.metrics.pose` (Human3.6M-style: MPJPE family, the original's 2D PCK, per
action and subject) and :mod:`ctxpose.metrics.mpi_inf_3dhp` (the MPI-INF-3DHP protocol: PCK, AUC and its tables)."""
