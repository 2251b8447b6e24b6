"""FER Studio core: data, models, training and evaluation for facial emotion recognition.

This package never imports streamlit; the pages in ``pages/`` are a thin UI over it.
Heavy dependencies (TensorFlow) are imported lazily by the modules that need them, and importing
the package installs nothing: the app's start-up steps are ``bootstrap``'s, the command line's
are at its entry (:func:`fer_core.cli.main`), and the functions that use Keras fence TensorFlow
off under another backend themselves (:func:`fer_core.device.quiet_tensorflow`).
"""

__version__ = "0.1.0"
