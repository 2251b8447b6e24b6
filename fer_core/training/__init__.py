"""The training engine: ``model.fit`` with callbacks and resume, validation, recalibration,
TensorBoard logs, and the catalogue of runs."""
