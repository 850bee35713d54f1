"""Generative Adversarial Simulator (Raiman 2020): data-free / simulator-free distillation with a generator.

The method is in :mod:`papers.gan_simulator.method`; the design (the paper's text is not public beyond its
abstract) is specified in ``papers/gan_simulator/README.md``.
"""
