"""The evaluation wing: what a trained model is measured by.

Owns greedy and beam search over a step callback (`decode`), corpus metrics and AER (`metrics`),
CIDEr-D for captions (`cider`), grounding of attention over pictures: the pointing game and the
attention mass in gold boxes (`grounding`), the evaluation passes over a split (`evaluate`), gold
alignment files (`gold`), and attention heatmaps and caption strips (`plots`).

Imports the model and data wings.
"""
