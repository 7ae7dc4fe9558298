"""Training TopFormer on a CamVid-layout folder (DIR/images/<split>, DIR/labels/<split>).

Modules:
  ``config``     -- TrainConfig and the named recipes (the ablation rows); torch-free
  ``data``       -- torch-free: training data in memory, numpy/cv2 augmentations
                    (files are found and read by ``engine.models.datasets``)
  ``losses``     -- cross-entropy and OHEM (torch)
  ``ema``        -- exponential moving average of the weights (torch)
  ``distill``    -- an installed model's probabilities as a second target; unlabelled frames
  ``pretrained`` -- start from another run's or an official checkpoint's weights
  ``lwf``        -- learning without forgetting: the start's own classifier kept predicting
                    what the frozen start predicts (torch)
  ``validation`` -- in-loop mIoU per set and per drive (torch)
  ``trainer``    -- the training loop (torch): AdamW + warm-up + poly decay, EMA,
                    held-out-drive selection, resumable checkpoints, JSON-lines log
  ``ship``       -- export a training checkpoint into models/ with a manifest entry

This package's ``__init__`` imports nothing heavy on purpose. Nothing outside training
imports it (``engine.jobs.evaluate`` reads data through ``engine.models.datasets``).
"""
