"""Pipeline steps, one module each, every one with a ``run(ctx, ...)`` entry point.

AffinityNet/PSA: train_cam -> make_cam -> eval_cam -> ... (see :mod:`wsss.steps.pipeline`).
"""
