"""FER Studio core: data, models, training and evaluation for facial emotion recognition.

This package never imports streamlit; the pages in ``pages/`` are a thin UI over it.
Heavy dependencies (TensorFlow) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"

from fer_core.device import fence_tensorflow  # noqa: E402

fence_tensorflow()  # under KERAS_BACKEND=jax or torch, TensorFlow is never imported, even by Keras
