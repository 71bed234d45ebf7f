"""Backends: one module per framework, each implementing the contract in :mod:`botcore.backend`.

This package imports nothing on import; the dispatcher imports the ``numpy``,
``torch``, ``tensorflow``, ``jax`` or ``dask`` backend lazily, only once an array
of that framework has been seen (or ``backend=`` names it).

========== ===================================== ==================================
backend    kernel                                notes
========== ===================================== ==================================
numpy      tiled stencils; PyWavelets otherwise  the reference; every pywt mode
torch      strided slices of the stencils        differentiable; keeps the device
tensorflow stencils, XLA-compiled when large     tf.Tensor and tf.Variable in
jax        strided slices of the stencils        differentiable, works under jit
dask       the numpy kernels per block (+ halo)  lazy; bit-identical to numpy
========== ===================================== ==================================
"""
