"""Knowledge Flow (Liu, Peng & Schwing, ICLR 2019): teachers' layers flow into a student that ends independent.

The method is in :mod:`papers.knowledge_flow.method`; the multi-task baseline of Table 7, Distral (KL + ent
1col), in :mod:`papers.knowledge_flow.distral`.
"""
