"""The evaluation wing: what a trained model is measured by.

Owns greedy and beam search over a step callback (`decode`), corpus metrics and AER (`metrics`),
CIDEr-D for captions (`cider`), grounding of attention over pictures: the pointing game and the
attention mass in gold boxes (`grounding`), the evaluation passes over a split (`evaluate`), gold
alignment files (`gold`), attention heatmaps and caption strips (`plots`), and what is measured
over many runs: a sweep's finished trials and their statistics over seeds (`trials`), a
translation sweep's tables and figures (`sweep_report`), a captioning sweep's
(`caption_report`), and the docs' generated blocks of measured figures (`doc_blocks`).

Imports the model and data wings.
"""
