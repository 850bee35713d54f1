"""Hierarchical prioritized replay policy distillation (Yin & Pan, AAAI 2017): many DQN teachers, one student.

The method is in :mod:`papers.hpr_distillation.method`; the replay memory (Uniform, PR, H-PR) in
:mod:`common.replay`.
"""
