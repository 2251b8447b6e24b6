"""Three sessions' first page loads on a fresh server, run by tests/test_concurrency.py in a process of its own:
each calls ``use_app_navigation()`` as a page does, then uses TensorFlow while the background import runs."""
import sys
import threading

import ui  # the pages' helpers; the background import starts with the first use_app_navigation()
from fer_core.models.build import create_model

errors = []


def session():
    try:
        ui.use_app_navigation()
        import tensorflow as tf  # a page's own first use
        tf.constant(1)
        create_model("tiny", 7)
    except Exception as exc:  # what a page would show
        errors.append(repr(exc))


threads = [threading.Thread(target=session) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
sys.exit(1 if errors else 0)
