"""The model layer: the architecture registry, layer notation, builders and ensembles."""
