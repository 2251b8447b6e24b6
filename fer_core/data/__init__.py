"""The data layer: FER2013 in any layout, the demo set, uploads and images decoded into faces."""
