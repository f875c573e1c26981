"""S2 — agents: a tool-use loop with JSON function calls validated against JSON Schemas, tools
(AST calculator, retrieval, sandboxed Python) and schema-constrained decoding (generation/constrained.py)."""
