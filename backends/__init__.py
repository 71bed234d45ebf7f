"""Backends: one module per framework, each implementing the contract in :mod:`botcore.backend`.

This package imports nothing on import; the dispatcher imports ``numpy``,
``torch``, ``tensorflow`` or ``jax`` backends lazily, only once an array of that
framework has been seen (or ``backend=`` names it).

========== ================================ ===================================
backend    kernel                           notes
========== ================================ ===================================
numpy      PyWavelets ``dwt``/``idwt``      the reference; every pywt mode
torch      strided slices of the stencils   differentiable; keeps the device
tensorflow strided slices of the stencils   tf.Tensor and tf.Variable in
jax        strided slices of the stencils   differentiable, works under jit
========== ================================ ===================================
"""
