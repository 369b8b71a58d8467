"""Shipped model folder `cad_tokenizer_small` (a package so that wheels include its files)."""
