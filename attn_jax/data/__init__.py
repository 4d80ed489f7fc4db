"""The data wing: what goes into a model, before any model exists.

Owns the special token ids (`tokens`), the embedded Hindi->English grammar with gold alignments
(`synthetic`), the embedded captioned pictures with gold boxes (`scenes`), the dataset registry
and TFDS builders (`sources`), word and sentencepiece vocabularies (`vocab`), the source-length
buckets of BLEU-by-length (`lengths`), and splits held in memory with their length buckets and
batches (`batches`).

Imports none of the other wings.
"""
