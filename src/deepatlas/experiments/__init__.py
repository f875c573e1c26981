"""One module per place's experiment, named by its map id (f3_optimizers.py, l2_gpt.py, ...).

Every module here is imported by `deepatlas.core.registry.load_all()`; its `@experiment`
decorator registers it.
"""
