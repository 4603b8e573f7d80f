"""webcnn: compile CNNs to WebGL2 bundles that run in the browser under a per-frame GPU budget."""
from .compiler import compile
from .errors import UnsupportedError, WebcnnError

__all__ = ["compile", "WebcnnError", "UnsupportedError"]
__version__ = "0.1.0"
