"""FER Studio core: data, models, training and evaluation for facial emotion recognition.

This package never imports streamlit; the pages in ``pages/`` are a thin UI over it.
Heavy dependencies (TensorFlow) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
