"""Sample-quality metrics (FID, KID, Inception-Score-style score, precision/recall) computed on
the features of a network deepatlas trains itself (features.py): there are no Inception weights
offline, so the numbers rank models of this project and are not comparable to published FIDs."""
