"""Blocks reused by several families (SEANet, Vocos, ...); import them from their modules."""
