"""The evaluation wing: what a trained model is measured by.

Owns greedy and beam search over a step callback (`decode`), corpus metrics and AER (`metrics`),
the evaluation passes over a split (`evaluate`), gold alignment files (`gold`), and attention
heatmaps (`plots`).

Imports the model and data wings.
"""
