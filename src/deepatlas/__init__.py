"""deepatlas: the map of modern deep learning and generative AI, built, checked and shown."""
__version__ = "0.1.0"
