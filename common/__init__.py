"""Shared modules for the four knowledge-transfer reproductions (envs, nets, learner, zoo, stats, report)."""
