"""The GPU-first trainer: the ResNet18 variants, the on-device stamp store and augmentation, the loop."""
