"""conva_nb: Controlled Value Vector Activation (ConVA, Jin et al., ACL 2025), for teaching.

Data flows one way: values -> datasets -> activations -> probes -> steering
(+ gates) -> evaluation -> circle / plots.
"""
from .values import VALUE_NAMES, VALUES, canonical

__version__ = "0.1.0"
__all__ = ["VALUES", "VALUE_NAMES", "canonical", "__version__"]
