"""S1 — retrieval-augmented generation: corpora, chunking, BM25, dense FAISS retrieval, RRF hybrid,
an on-disk index with checksums, grounded answers that cite numbered passages, an evaluation set."""
