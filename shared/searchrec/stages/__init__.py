"""Stage logic: one module per pipeline stage, plain functions over local paths (no KFP imports).

extract / clean must not import torch, transformers or faiss; so this package imports nothing
itself, and each stage module is imported on its own (``from searchrec.stages.extract import ...``).
"""
