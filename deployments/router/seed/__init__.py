"""The router's labeled seed set, generated from templates with varied fillers.

`python -m deployments.router.seed.build` writes deployments/router/data/seed.jsonl; the labeling
rubric and the format are in deployments/router/data/README.md.
"""
