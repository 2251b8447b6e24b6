"""Shipping: the released default model and its card, and exports to other runtimes."""
