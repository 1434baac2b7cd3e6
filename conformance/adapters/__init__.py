"""Backends that wrap other libraries, so the suite can check them against refprune.

Each adapter is an ordinary backend (``conformance.backend``): a class whose
methods call the library and convert NumPy arrays in and out. An adapter
imports its library only when it is instantiated, so this package imports
without any of them installed.

``conformance.adapters.torch_backend:TorchBackend``
    PyTorch: ``torch.nn.utils.prune`` for the mask operations (claim the
    ``torch`` profile), ``torch.func`` for loss, gradient, Hessian-vector
    products, the Hessian and its diagonal. Needs the ``torch`` extra::

        pip install 'refprune[torch]'
        python -m conformance run --backend conformance.adapters.torch_backend:TorchBackend --profile torch

    What it passes and where it deviates: ``docs/torch_adapter.md``.

``conformance.adapters.jax_backend:JaxBackend``
    JAX: ``jax.grad``, ``jax.jvp`` (forward-over-reverse Hessian-vector
    products) and ``jax.hessian`` in float64 for loss, gradient, Hessian-vector
    products, the Hessian and its diagonals, and the derivative-based scores.
    Needs the ``jax`` extra. ``docs/jax_adapter.md``.

``conformance.adapters.tfmot_backend:TfmotBackend``
    TensorFlow Model Optimization: the ``prune_low_magnitude`` mask update
    (``pruning_impl.Pruning``) and the ``PolynomialDecay`` / ``ConstantSparsity``
    schedules, under the ``tfmot`` profile. Needs the ``tfmot`` extra.
    ``docs/tfmot_adapter.md``.
"""
