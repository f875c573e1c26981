"""Vision helpers shared by the image places (A1, V1–V6): classification training on Fashion-MNIST."""
