"""The special token ids every vocabulary, model and decoder shares (their one definition).

  src     = [x1..xm, PAD...]
  tgt_in  = [BOS, y1..yn, PAD...]
  tgt_out = [y1..yn, EOS, PAD...]
"""

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # the piece of each special id, in id order
