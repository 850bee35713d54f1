"""Collaborative Deep RL / cA3C (Lin, Wang & Zhou 2017): deep knowledge distillation through alignment networks.

The method is in :mod:`papers.cdrl.method`.
"""
