"""Shipped model folder `titok_demo` (a package so that wheels include its files)."""
