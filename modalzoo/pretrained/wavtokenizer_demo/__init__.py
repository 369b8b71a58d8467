"""Shipped model folder `wavtokenizer_demo` (a package so that wheels include its files)."""
