"""Training TopFormer on a CamVid-layout folder (DIR/images/<split>, DIR/labels/<split>).

Modules:
  ``data``    -- torch-free: listing and loading samples, numpy/cv2 augmentations
                 (eval and the app may import it without torch)
  ``trainer`` -- the training loop (torch): AdamW + warm-up + poly decay, EMA,
                 resumable checkpoints, JSON-lines log of validation mIoU
  ``ship``    -- export a training checkpoint into models/ with a manifest entry

This package's ``__init__`` imports nothing heavy on purpose: ``engine.evaluate``
uses ``engine.training.data`` and must stay importable without torch.
"""
