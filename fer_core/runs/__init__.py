"""The run format, below inference and training: the training configuration and the run directory
(written by training, read by every later layer), and the named recipes."""
