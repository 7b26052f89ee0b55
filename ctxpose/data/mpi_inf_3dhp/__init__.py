"""MPI-INF-3DHP test set: official layout, cameras, synthesis, preprocessing, dataset and export."""
