"""Shipped model folder `vat_small` (a package so that wheels include its files)."""
