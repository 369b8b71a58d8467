"""Samples bundled with the package for `modalzoo demo` (a package so that they ship in wheels).

* `chelsea.png`: scikit-image's `chelsea` photograph (CC0; Stéfan van der Walt's cat), shorter side
  reduced to 128 px. Held out of the training data of `modalzoo/pretrained/titok_demo`.
* `speech.wav`: "Codes in, speech out: the tokenizer rebuilds what it heard.", synthesised with
  espeak-ng (voice en-us+f3, 160 words/min, 22.05 kHz 16-bit) by
  training/scripts/train_demo_models.py `make_demo_clip`; no training clip says this sentence.
"""
