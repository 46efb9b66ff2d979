"""The reference deterioration-risk model: synthetic cohort, training, ONNX export, model card.

`python -m cdsflow.training` (or `make model`) regenerates everything from one seed.
"""
