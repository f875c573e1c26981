"""Data sets of the atlas, all from local system packages or checked downloads — never a hub.

fashion_mnist  Fashion-MNIST (Debian dataset-fashion-mnist, else cache, else a SHA-256-checked download)
digits         scikit-learn's 8×8 digits, fixed split
austen         Jane Austen's six novels from the r-cran-janeaustenr .deb (rserialize: R's format, no R)
bible          the King James Bible via the `bible` command (bible-kjv)
lm             language-modelling batches from any 1-D id stream, deterministic for exact resume
cache          the cache folder ($DEEPATLAS_CACHE) and the atomic, checksummed download
"""
